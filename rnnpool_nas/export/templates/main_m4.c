/* Cortex-M4 (QEMU mps2-an386) driver: runs the model on the sample input compiled into the image
 * and prints the output bytes in the same format as `model_host --print`, then the stack used. */
#include <stdint.h>

#include "model.h"
#include "sample_input.h"
#include "semihost.h"

static int8_t output[MODEL_OUTPUT_SIZE];

static char *put_uint(char *p, uint32_t v) {
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n) *p++ = digits[--n];
    return p;
}

int main(void) {
    static const char hex[] = "0123456789abcdef";
    char line[3 * 32 + 2]; /* the output goes out 32 bytes at a time: no buffer of its size */
    char *p;
    int i;
    stack_paint();
    if (model_run(sample_input, output) != 0) {
        semihost_write("model_run failed\n");
        return 1;
    }
    semihost_write("output:");
    for (i = 0; i < MODEL_OUTPUT_SIZE;) {
        p = line;
        do {
            uint8_t b = (uint8_t)output[i++];
            *p++ = ' ';
            *p++ = hex[b >> 4];
            *p++ = hex[b & 15u];
        } while (i < MODEL_OUTPUT_SIZE && i % 32);
        *p = 0;
        semihost_write(line);
    }
    semihost_write("\n");
    p = line;
    for (i = 0; "stack_bytes: "[i]; i++) *p++ = "stack_bytes: "[i];
    p = put_uint(p, stack_used());
    *p++ = '\n';
    *p = 0;
    semihost_write(line);
    return 0;
}
