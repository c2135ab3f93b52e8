/* `attn bench train` (bench_train.c): full training steps of a GPT-like decoder. */
#ifndef ATTN_BENCH_TRAIN_H
#define ATTN_BENCH_TRAIN_H

#include <stdio.h>

int cli_bench_train_main(int argc, char **argv); /* argv[0] == "train" */
void cli_bench_train_usage(FILE *f);

#endif
