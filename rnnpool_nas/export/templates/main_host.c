/* Host driver. `model_host IN.bin OUT.bin` runs every input in IN.bin (int8, MODEL_INPUT_SIZE
 * bytes each, NHWC) and writes the int8 outputs to OUT.bin; `model_host --stream IN.bin OUT.bin`
 * does the same through model_run_stream, delivering each image row by row from a callback (which
 * checks that the rows are asked for in order, each once); `model_host --print IN.bin` prints
 * each output as `output: xx xx ...` (hex bytes, the Cortex-M4 build's format); for a detector,
 * `model_host --detect IN.bin` prints each image's face boxes (`box: x1 y1 x2 y2 score`). */
#include <stdio.h>
#include <string.h>

#include "model.h"

static int8_t input[MODEL_INPUT_SIZE];
static int8_t output[MODEL_OUTPUT_SIZE];

typedef struct {
    const int8_t *image;
    int32_t next;   /* the row expected next */
} row_source_t;

static int read_row(void *ctx, int32_t row, int8_t *dst) {
    row_source_t *src = (row_source_t *)ctx;
    if (row != src->next || row < 0 || row >= MODEL_INPUT_H) {
        fprintf(stderr, "model_run_stream asked for row %ld, expected %ld\n", (long)row, (long)src->next);
        return 3;
    }
    memcpy(dst, src->image + (long)row * MODEL_INPUT_W * MODEL_INPUT_C, (size_t)MODEL_INPUT_W * MODEL_INPUT_C);
    src->next++;
    return 0;
}

int main(int argc, char **argv) {
    int stream = argc == 4 && strcmp(argv[1], "--stream") == 0;
    int print = argc == 3 && strcmp(argv[1], "--print") == 0;
    int detect = argc == 3 && strcmp(argv[1], "--detect") == 0;
    FILE *in, *out = NULL;
    long count = 0;
    if (stream) {
        argv++;
        argc--;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s [--stream] IN.bin OUT.bin | --print IN.bin | --detect IN.bin\n", argv[0]);
        return 2;
    }
    in = fopen(argv[print || detect ? 2 : 1], "rb");
    if (!in) {
        fprintf(stderr, "cannot open %s\n", argv[print || detect ? 2 : 1]);
        return 2;
    }
#ifndef MODEL_HEADS
    if (detect) {
        fprintf(stderr, "--detect: this model is not a detector\n");
        return 2;
    }
#endif
    if (!print && !detect && !(out = fopen(argv[2], "wb"))) {
        fprintf(stderr, "cannot write %s\n", argv[2]);
        fclose(in);
        return 2;
    }
    while (fread(input, 1, MODEL_INPUT_SIZE, in) == MODEL_INPUT_SIZE) {
        if (stream) {
            row_source_t src;
            src.image = input;
            src.next = 0;
            if (model_run_stream(read_row, &src, output) != 0 || src.next != MODEL_INPUT_H) {
                fprintf(stderr, "model_run_stream failed on input %ld\n", count);
                return 1;
            }
        } else if (model_run(input, output) != 0) {
            fprintf(stderr, "model_run failed on input %ld\n", count);
            return 1;
        }
        if (detect) {
#ifdef MODEL_HEADS
            static rn_box_t boxes[750];
            int k, n = model_detect(output, boxes, 750);
            printf("image %ld: %d boxes\n", count, n);
            for (k = 0; k < n; k++)
                printf("box: %.17g %.17g %.17g %.17g %.17g\n", boxes[k].x1, boxes[k].y1, boxes[k].x2, boxes[k].y2,
                       boxes[k].score);
#endif
        } else if (print) {
            int i;
            printf("output:");
            for (i = 0; i < MODEL_OUTPUT_SIZE; i++) printf(" %02x", (unsigned)(uint8_t)output[i]);
            printf("\n");
        } else if (fwrite(output, 1, MODEL_OUTPUT_SIZE, out) != MODEL_OUTPUT_SIZE) {
            fprintf(stderr, "write failed\n");
            return 1;
        }
        count++;
    }
    fclose(in);
    if (out) fclose(out);
    if (count == 0) {
        fprintf(stderr, "no complete input of %d bytes in %s\n", MODEL_INPUT_SIZE, argv[print || detect ? 2 : 1]);
        return 2;
    }
    return 0;
}
