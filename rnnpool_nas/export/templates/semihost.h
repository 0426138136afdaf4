/* ARM semihosting (QEMU -semihosting) and stack measurement, from startup_m4.c. */
#ifndef SEMIHOST_H
#define SEMIHOST_H
#include <stdint.h>
void semihost_write(const char *text);
void semihost_exit(int status);
void stack_paint(void);
uint32_t stack_used(void);
#endif
