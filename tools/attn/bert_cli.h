/* The BERT sentence-embedding commands of `attn` (embed.c): `attn embed`, `attn similarity` and
 * `attn bench bert`. */
#ifndef ATTN_BERT_CLI_H
#define ATTN_BERT_CLI_H

#include <stdio.h>

int cli_embed_main(int argc, char **argv);      /* argv[0] == "embed" */
int cli_similarity_main(int argc, char **argv); /* argv[0] == "similarity" */
int cli_bench_bert_main(int argc, char **argv); /* argv[0] == "bert" */
void cli_bench_bert_usage(FILE *f);

#endif
