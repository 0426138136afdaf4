/* Cortex-M4 (QEMU mps2-an386) driver: runs the model on the sample input compiled into the image
 * and prints the output bytes in the same format as `model_host --print`, then the stack used.
 * Built with -DMAIN_STREAM_INPUT (make m4-stream) it calls model_run_stream instead, with a
 * callback that delivers the sample row by row (a camera's lines): the RAM of that build is the
 * whole program's with a streamed input. */
#include <stdint.h>

#include "model.h"
#include "sample_input.h"
#include "semihost.h"

static int8_t output[MODEL_OUTPUT_SIZE];

#ifdef MAIN_STREAM_INPUT
static int read_row(void *ctx, int32_t row, int8_t *dst) {
    const int8_t *src = sample_input + row * (MODEL_INPUT_W * MODEL_INPUT_C);
    int i;
    (void)ctx;
    for (i = 0; i < MODEL_INPUT_W * MODEL_INPUT_C; i++) dst[i] = src[i];
    return 0;
}
#endif

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
#ifdef MAIN_STREAM_INPUT
    if (model_run_stream(read_row, 0, output) != 0) {
#else
    if (model_run(sample_input, output) != 0) {
#endif
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
