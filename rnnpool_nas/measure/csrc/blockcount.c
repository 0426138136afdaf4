/* blockcount.c - Unicorn block hook that counts basic-block executions in C (rnnpool_nas.measure).
 *
 * The emulator's Python hook does the same with a dict (emulate.py: the key layout is shared);
 * this one is the fast path, about an order of magnitude quicker. Per block entry it counts
 *   key | seg            a sequential entry (the block starts where the last one ended),
 *   key | JUMP | seg     an entry by a taken branch, and
 *   prev | TAKEN | seg   the taken exit of the block before it,
 * where key = address << 12 | size and seg = the current marker << 46, in one open-addressing
 * hash table. Built with the host compiler on first use and cached. */
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
}
