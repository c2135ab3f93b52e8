#!/usr/bin/env python3
"""dev: build a copy of the AVX-512 forward with rdtsc counters around QK^T, the softmax step and
P.V, to see where the forward's cycles go. rdtsc ticks at the nominal clock (2.3 GHz here), not the
turbo clock, so FLOP per tick overstates FLOP per cycle by ~2.8/2.3.

  python3 04_make_timed.py && gcc -O3 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma \
      -I../include -I../src/core 04_fwd_timed.c ../src/core/*.c ../src/ref/sdpa_ref.c -lpthread -lm \
      -o /tmp/ft && /tmp/ft 2048 64 0
"""
import os
here = os.path.dirname(os.path.abspath(__file__))
s = open(os.path.join(here, '../src/cpu/sdpa_kernel.inc')).read()
def sub(old, new):
    global s
    assert old in s, old[:60]
    s = s.replace(old, new, 1)
sub('static void fwd_block(', 'static unsigned long long T_qk, T_sm, T_pv, T_blk;\nstatic void fwd_block(')
sub('''    mk_opts qo = {NULL, NULL, fused_max ? tmax : NULL};''', '''    mk_opts qo = {NULL, NULL, fused_max ? tmax : NULL};
    unsigned long long t0 = __rdtsc();''')
sub('''    if (generic) {
      for (int64_t t = 0; t < nt; t++)
        for (int x = 0; x < nb; x++)
          St[t * QW + x] =''', '''    unsigned long long t1 = __rdtsc(); T_qk += t1 - t0;
    if (generic) {
      for (int64_t t = 0; t < nt; t++)
        for (int x = 0; x < nb; x++)
          St[t * QW + x] =''')
sub('''    mk(Dv, Ot, QW, kv->v + j0 * kv->vs, 1, kv->vs, St, QW, nt, &po, true);''', '''    unsigned long long t2 = __rdtsc(); T_sm += t2 - t1;
    mk(Dv, Ot, QW, kv->v + j0 * kv->vs, 1, kv->vs, St, QW, nt, &po, true);
    T_pv += __rdtsc() - t2;''')
sub('''    fwd_block(c, &s, b, h, i0, nb, &kv, w.Qt, w.Ot, w.St, w.ml, w.bits, w.lo, w.hi);''', '''    unsigned long long tq = __rdtsc();
    fwd_block(c, &s, b, h, i0, nb, &kv, w.Qt, w.Ot, w.St, w.ml, w.bits, w.lo, w.hi);
    T_blk += __rdtsc() - tq;''')
open(os.path.join(here, 'sdpa_kernel_timed.inc'), 'w').write(s)
a = open(os.path.join(here, '../src/cpu/avx512/sdpa_avx512.c')).read()
a = a.replace('#include "../sdpa_kernel.inc"', '#include <x86intrin.h>\n#include "sdpa_kernel_timed.inc"')
a = a.replace('const attn__kernels attn__kernels_avx512', 'const attn__kernels attn__kernels_avx512_timed')
open(os.path.join(here, '04_fwd_timed_kernel.c'), 'w').write(a)
