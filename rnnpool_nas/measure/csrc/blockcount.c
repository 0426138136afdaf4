/* blockcount.c - Unicorn block hook that counts basic-block executions in C (rnnpool_nas.measure).
 *
 * The emulator's Python hook does the same with a dict (emulate.py: the key layout is shared);
 * this one is the fast path, about an order of magnitude quicker. Per block entry it counts
 *   key | seg            a sequential entry (the block starts where the last one ended),
 *   key | JUMP | seg     an entry by a taken branch, and
 *   prev | TAKEN | seg   the taken exit of the block before it,
 * where key = address << 12 | size and seg = the current marker << 46, in one open-addressing
 * hash table. Built with the host compiler on first use and cached.
 *
 * Flash wait states (rn_flash_reset(end, 1); emulate.py's flash_wait_states): a model of
 * the STM32F4/L4 ART accelerator's caches in front of the flash at [0, flash_end), in 16-byte
 * lines: an instruction cache of 64 lines (4 ways of 16 sets, LRU) that every executed block's
 * lines pass through, and a data cache of 8 lines (fully associative, LRU) that every data read
 * from flash passes through (rn_read_hook). Each miss is counted under the current marker
 * (rn_flash_misses); the caller charges the wait states per miss. */
#include <stdint.h>
#include <stdlib.h>

#define JUMP (1ull << 44)
#define TAKEN (1ull << 45)
#define SEG_SHIFT 46
#define EMPTY (~0ull)

typedef struct {
    uint64_t key;
    uint64_t n;
} slot_t;

static slot_t *table;
static uint64_t cap, used, seg, prev_end = EMPTY, prev_key;

static int grow(void);
static int flash_on;
static void flash_fetch(uint64_t address, uint32_t size);

static void bump(uint64_t key) {
    uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> 20;
    for (;;) {
        slot_t *s = &table[i & (cap - 1)];
        if (s->key == key) {
            s->n++;
            return;
        }
        if (s->key == EMPTY) {
            s->key = key;
            s->n = 1;
            if (++used * 2 > cap) grow();
            return;
        }
        i++;
    }
}

static int grow(void) {
    slot_t *old = table;
    uint64_t old_cap = cap, i;
    cap = cap ? cap * 2 : 1u << 12;
    table = (slot_t *)malloc(cap * sizeof *table);
    if (!table) abort();
    for (i = 0; i < cap; i++) table[i].key = EMPTY;
    used = 0;
    for (i = 0; i < old_cap; i++) {
        if (old[i].key != EMPTY) {
            uint64_t j = (old[i].key * 0x9E3779B97F4A7C15ull) >> 20;
            while (table[j & (cap - 1)].key != EMPTY) j++;
            table[j & (cap - 1)] = old[i];
            used++;
        }
    }
    free(old);
    return 0;
}

void rn_reset(void) {
    free(table);
    table = 0;
    cap = used = seg = 0;
    prev_end = EMPTY;
    prev_key = 0;
    grow();
}

void rn_set_segment(uint64_t marker) { seg = marker << SEG_SHIFT; }

uint64_t rn_used(void) { return used; }

/* Copies the (key, count) pairs into keys[]/counts[] (rn_used() entries each). */
void rn_dump(uint64_t *keys, uint64_t *counts) {
    uint64_t i, k = 0;
    for (i = 0; i < cap; i++) {
        if (table[i].key != EMPTY) {
            keys[k] = table[i].key;
            counts[k] = table[i].n;
            k++;
        }
    }
}

void rn_block_hook(void *uc, uint64_t address, uint32_t size, void *user_data) {
    const uint64_t key = (address << 12) | size;
    (void)uc;
    (void)user_data;
    if (address == prev_end) {
        bump(key | seg);
    } else {
        bump(key | JUMP | seg);
        bump(prev_key | TAKEN | seg);
    }
    prev_end = address + size;
    prev_key = key;
    if (flash_on) flash_fetch(address, size);
}

/* ------------------------------------------------------------------ flash caches (see the top) */

#define LINE_SHIFT 4
#define I_SETS 16
#define I_WAYS 4
#define D_LINES 8
#define NO_LINE (~0ull)

static uint64_t icache[I_SETS][I_WAYS], dcache[D_LINES];
static uint64_t *imiss, *dmiss, nseg_cap, flash_end;

static void seg_grow(uint64_t marker) {
    uint64_t cap = nseg_cap ? nseg_cap : 64, i;
    while (cap <= marker) cap *= 2;
    imiss = (uint64_t *)realloc(imiss, cap * sizeof *imiss);
    dmiss = (uint64_t *)realloc(dmiss, cap * sizeof *dmiss);
    if (!imiss || !dmiss) abort();
    for (i = nseg_cap; i < cap; i++) imiss[i] = dmiss[i] = 0;
    nseg_cap = cap;
}

/* enable != 0: count the misses of the flash at [0, end); 0: off (the counters reset either way). */
void rn_flash_reset(uint64_t end, int enable) {
    uint64_t i, j;
    for (i = 0; i < I_SETS; i++)
        for (j = 0; j < I_WAYS; j++) icache[i][j] = NO_LINE;
    for (i = 0; i < D_LINES; i++) dcache[i] = NO_LINE;
    for (i = 0; i < nseg_cap; i++) imiss[i] = dmiss[i] = 0;
    flash_end = end;
    flash_on = enable;
    if (!nseg_cap) seg_grow(64);
}

static int i_access(uint64_t line) {   /* 1 on a miss; the line becomes the most recent of its set */
    uint64_t *set = icache[line % I_SETS];
    int w, hit = I_WAYS - 1;
    for (w = 0; w < I_WAYS; w++) {
        if (set[w] == line) {
            hit = w;
            break;
        }
    }
    const int miss = w == I_WAYS;
    for (w = hit; w > 0; w--) set[w] = set[w - 1];
    set[0] = line;
    return miss;
}

static void flash_fetch(uint64_t address, uint32_t size) {
    const uint64_t m = seg >> SEG_SHIFT;
    uint64_t line, last = (address + size - 1) >> LINE_SHIFT, n = 0;
    if (address >= flash_end) return;
    for (line = address >> LINE_SHIFT; line <= last; line++) n += (uint64_t)i_access(line);
    if (n) {
        if (m >= nseg_cap) seg_grow(m);
        imiss[m] += n;
    }
}

void rn_read_hook(void *uc, int type, uint64_t address, int size, int64_t value, void *user_data) {
    const uint64_t line = address >> LINE_SHIFT, m = seg >> SEG_SHIFT;
    int i, hit = D_LINES - 1;
    (void)uc; (void)type; (void)size; (void)value; (void)user_data;
    if (!flash_on || address >= flash_end) return;
    for (i = 0; i < D_LINES; i++) {
        if (dcache[i] == line) {
            hit = i;
            break;
        }
    }
    if (i == D_LINES) {
        if (m >= nseg_cap) seg_grow(m);
        dmiss[m]++;
    }
    for (i = hit; i > 0; i--) dcache[i] = dcache[i - 1];
    dcache[0] = line;
}

uint64_t rn_flash_segments(void) { return nseg_cap; }

/* instruction and data misses under each marker 0 .. rn_flash_segments() - 1 */
void rn_flash_misses(uint64_t *inst, uint64_t *data) {
    uint64_t i;
    for (i = 0; i < nseg_cap; i++) {
        inst[i] = imiss[i];
        data[i] = dmiss[i];
    }
}
