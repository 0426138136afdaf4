/* Minimal Cortex-M4 start-up for QEMU's mps2-an386: the vector table, a reset handler that copies
 * .data and clears .bss, ARM semihosting output (SYS_WRITE0) and exit (SYS_EXIT), and a painted
 * stack so that main can measure how much of it the model used. No C library start-up code. */
#include <stdint.h>

#include "semihost.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _stack_limit, _stack_top;
int main(void);

void Reset_Handler(void);
void Default_Handler(void);

#define VEC(f) ((uint32_t)(f))
__attribute__((section(".isr_vector"), used))
static const uint32_t vectors[16] = {
    VEC(&_stack_top), VEC(Reset_Handler), VEC(Default_Handler), VEC(Default_Handler),
    VEC(Default_Handler), VEC(Default_Handler), VEC(Default_Handler), 0, 0, 0, 0,
    VEC(Default_Handler), VEC(Default_Handler), 0, VEC(Default_Handler), VEC(Default_Handler),
};

static uint32_t semihost_call(uint32_t op, const void *arg) {
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void semihost_write(const char *text) { semihost_call(0x04u, text); }

void semihost_exit(int status) {
    /* SYS_EXIT with ADP_Stopped_ApplicationExit (0x20026); QEMU exits with status 0 */
    (void)status;
    semihost_call(0x18u, (const void *)0x20026u);
    for (;;) {
    }
}

#define STACK_PAINT 0xA5A5A5A5u

void stack_paint(void) {
    uint32_t sp;
    uint32_t *p = &_stack_limit;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    sp -= 64u; /* leave this frame and a margin alone */
    while ((uint32_t)p < sp) *p++ = STACK_PAINT;
}

uint32_t stack_used(void) {
    const uint32_t *p = &_stack_limit;
    while (p < &_stack_top && *p == STACK_PAINT) p++;
    return (uint32_t)((const uint8_t *)&_stack_top - (const uint8_t *)p);
}

void Reset_Handler(void) {
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    semihost_exit(main());
}

void Default_Handler(void) {
    semihost_write("fault: unexpected exception\n");
    semihost_exit(1);
}
