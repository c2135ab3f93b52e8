#include <attn.h>
#include <stdio.h>

int main(void) {
  enum { B = 1, H = 2, N = 4, D = 8 };
  float q[B * H * N * D], k[B * H * N * D], v[B * H * N * D], out[B * H * N * D];
  for (int i = 0; i < B * H * N * D; i++) q[i] = k[i] = v[i] = (float)(i % 7) / 7.0f;
  int64_t shape[4] = {B, H, N, D};
  attn_tensor tq = attn_tensor_make(q, ATTN_DTYPE_F32, 4, shape), tk = attn_tensor_make(k, ATTN_DTYPE_F32, 4, shape);
  attn_tensor tv = attn_tensor_make(v, ATTN_DTYPE_F32, 4, shape), to = attn_tensor_make(out, ATTN_DTYPE_F32, 4, shape);
  attn_sdpa_params p = attn_sdpa_params_default();
  p.causal = 1; /* scale defaults to 1/sqrt(D) */
  attn_status st = attn_sdpa_forward(&to, NULL, NULL, &tq, &tk, &tv, &p, NULL, 0);
  if (st != ATTN_OK) return fprintf(stderr, "%s: %s\n", attn_status_str(st), attn_last_error()), 1;
  printf("out[0,0,3,:2] = %.4f %.4f\n", out[3 * D], out[3 * D + 1]);
  return 0;
}
