/* Host driver. `model_host IN.bin OUT.bin` runs every input in IN.bin (int8, MODEL_INPUT_SIZE
 * bytes each, NHWC) and writes the int8 outputs to OUT.bin; `model_host --print IN.bin` prints
 * each output as `output: xx xx ...` (hex bytes, the Cortex-M4 build's format); for a detector,
 * `model_host --detect IN.bin` prints each image's face boxes (`box: x1 y1 x2 y2 score`). */
#include <stdio.h>
#include <string.h>

#include "model.h"

static int8_t input[MODEL_INPUT_SIZE];
static int8_t output[MODEL_OUTPUT_SIZE];

int main(int argc, char **argv) {
    int print = argc == 3 && strcmp(argv[1], "--print") == 0;
    int detect = argc == 3 && strcmp(argv[1], "--detect") == 0;
    FILE *in, *out = NULL;
    long count = 0;
    if (argc != 3) {
        fprintf(stderr, "usage: %s IN.bin OUT.bin | --print IN.bin | --detect IN.bin\n", argv[0]);
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
        if (model_run(input, output) != 0) {
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
