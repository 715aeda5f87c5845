// The top-k softmax kernels, written once over a 16-lane primitive set `O`
// (topk_simd.hpp). NO include guard on purpose: topk.hpp includes this file
// once per ISA, inside namespace promobandit::topk_detail::<isa> and inside
// that ISA's target pragma, after `using O = Ops<isa>;`. That is how one
// source gives an AVX-512, an AVX2 and a portable build of the same kernels
// without -march flags. Everything here is an implementation detail of topk.hpp.

using V = O::V;

// 2^t for t <= 0 in float: t = n + f with n = round(t), |f| <= 1/2 (exact),
// 2^f by a degree-5 polynomial (kExp2P), scaled by 2^n. t is clamped at
// kExp2Floor so 2^n stays a normal float; the terms cut off there are below
// 5e-38 of the largest term, far under the float rounding of a sum holding a 1.
inline V exp2_neg(V t) {
  t = O::max(t, O::set1(kExp2Floor));
  const V n = O::round(t);
  const V f = O::sub(t, n);
  V p = O::set1(kExp2P[5]);
  for (int i = 4; i >= 0; --i) p = O::fma(p, f, O::set1(kExp2P[i]));
  return O::scale2(p, n);
}

template <class Tag>
inline V load_items(const typename Tag::elem* p) {
  if constexpr (std::is_same_v<Tag, F32>) {
    return O::load(p);
  } else if constexpr (std::is_same_v<Tag, F16>) {
    return O::load_f16(p);
  } else {
    return O::load_bf16(p);
  }
}

template <class Tag>
inline V load_items_partial(const typename Tag::elem* p, int n) {
  if constexpr (std::is_same_v<Tag, F32>) {
    return O::load_partial(p, n);
  } else if constexpr (std::is_same_v<Tag, F16>) {
    return O::load_f16_partial(p, n);
  } else {
    return O::load_bf16_partial(p, n);
  }
}

template <class Tag>
inline float item_to_float(typename Tag::elem x) {
  if constexpr (std::is_same_v<Tag, F32>) {
    return x;
  } else if constexpr (std::is_same_v<Tag, F16>) {
    return O::cvt_f16(x);
  } else {
    return bf16_to_float(x);
  }
}

// ---------------------------------------------------------------------------
// Single user: lane l of a row's accumulator sums E[c*16+l] * u[c*16+l] over
// 16-dim chunks c in order (fused multiply-add), then reduce16 sums the lanes.

// One item row against R users: lane l of a[r] sums E[c*16+l] * U[r][c*16+l]
// over 16-dim chunks c in order. The row is read once, front to back (one
// stream the hardware prefetcher follows), with a software prefetch
// kPrefetchBytes ahead; the R user rows stay in L1.
template <class Tag, int R>
inline void dot_row(const typename Tag::elem* row, int64_t d, const float* U, V* a) {
  for (int r = 0; r < R; ++r) a[r] = O::zero();
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) {
    PROMOBANDIT_PREFETCH(reinterpret_cast<const char*>(row + c) + kPrefetchBytes);
    const V e = load_items<Tag>(row + c);
    for (int r = 0; r < R; ++r) a[r] = O::fma(e, O::load(U + r * d + c), a[r]);
  }
  if (c < d) {
    const int rem = static_cast<int>(d - c);
    const V e = load_items_partial<Tag>(row + c, rem);
    for (int r = 0; r < R; ++r) a[r] = O::fma(e, O::load_partial(U + r * d + c, rem), a[r]);
  }
}

// out[r * kStreamBlock + j] = E[i0 + j] . U[r] (+ bias[i0 + j]) for j < round_up(cnt, 16)
// (lanes past cnt are 0): the streaming kernel for B <= kSmallBatch users.
template <class Tag, int R>
inline void score_rows(const typename Tag::elem* E, int64_t i0, int64_t cnt, int64_t d,
                       const float* U, const float* bias, float* out) {
  V acc[R][16];
  for (int64_t g = 0; g < cnt; g += 16) {
    const int m = static_cast<int>(std::min<int64_t>(16, cnt - g));
    for (int j = 0; j < m; ++j) {
      V a[R];
      dot_row<Tag, R>(E + (i0 + g + j) * d, d, U, a);
      for (int r = 0; r < R; ++r) acc[r][j] = a[r];
    }
    for (int r = 0; r < R; ++r) {
      for (int j = m; j < 16; ++j) acc[r][j] = O::zero();
      V s = O::reduce16(acc[r]);
      if (bias != nullptr) {
        s = O::add(s, m == 16 ? O::load(bias + i0 + g) : O::load_partial(bias + i0 + g, m));
      }
      O::store(out + r * kStreamBlock + g, s);
    }
  }
}

// ---------------------------------------------------------------------------
// Batch: GEMM-style. An item block is packed (converted to float, transposed
// into panels of NR = 16*kNV items: panel[k][NR]) and stays in L2 while every
// user tile of the thread is scored against it by an MR x NR register tile.
// Lane (user r, item j) sums E[j][k] * u_r[k] over k = 0..d-1 in order with
// fused multiply-add, whatever MR, so results do not depend on the tiling.

constexpr int kNR = O::kNV * 16;

template <class Tag>
inline void pack_panel(const typename Tag::elem* E, int64_t i0, int cnt, int64_t d, float* dst) {
  if constexpr (O::kHasTranspose16) {
    if (cnt == kNR) {  // full panels: 16 x 16 tiles, converted and transposed in registers
      V in[16], tr[16];
      for (int j0 = 0; j0 < kNR; j0 += 16) {
        for (int64_t k0 = 0; k0 < d; k0 += 16) {
          const int w = static_cast<int>(std::min<int64_t>(16, d - k0));
          for (int r = 0; r < 16; ++r) {
            const typename Tag::elem* p = E + (i0 + j0 + r) * d + k0;
            PROMOBANDIT_PREFETCH(reinterpret_cast<const char*>(p) + kPrefetchBytes);
            in[r] = w == 16 ? load_items<Tag>(p) : load_items_partial<Tag>(p, w);
          }
          O::transpose16(in, tr);
          for (int kk = 0; kk < w; ++kk) O::store(dst + (k0 + kk) * kNR + j0, tr[kk]);
        }
      }
      return;
    }
  }
  for (int j = 0; j < cnt; ++j) {
    const typename Tag::elem* row = E + (i0 + j) * d;
    for (int64_t k = 0; k < d; ++k) dst[k * kNR + j] = item_to_float<Tag>(row[k]);
  }
  for (int j = cnt; j < kNR; ++j) {
    for (int64_t k = 0; k < d; ++k) dst[k * kNR + j] = 0.0f;
  }
}

// out[r][0, NR) = U[r] . panel (+ bias) for r < MR; U rows have stride d.
template <int MR>
inline void micro(const float* U, int64_t d, const float* panel, float* out, int64_t ldo,
                  const float* bias) {
  constexpr int NV = O::kNV;
  // Every loop over the tile is unrolled, so the accumulators live in registers from
  // the first instruction to the last (with rolled loops GCC kept a zeroed copy of the
  // tile on the stack and moved it in and out at every call).
  V acc[MR][NV];
  PROMOBANDIT_UNROLL(16)
  for (int r = 0; r < MR; ++r) {
    PROMOBANDIT_UNROLL(4)
    for (int v = 0; v < NV; ++v) acc[r][v] = O::zero();
  }
  for (int64_t k = 0; k < d; ++k) {
    V b[NV];
    PROMOBANDIT_UNROLL(4)
    for (int v = 0; v < NV; ++v) b[v] = O::load(panel + k * kNR + 16 * v);
    PROMOBANDIT_UNROLL(16)
    for (int r = 0; r < MR; ++r) {
      const V a = O::set1(U[r * d + k]);
      PROMOBANDIT_UNROLL(4)
      for (int v = 0; v < NV; ++v) acc[r][v] = O::fma(b[v], a, acc[r][v]);
    }
  }
  PROMOBANDIT_UNROLL(16)
  for (int r = 0; r < MR; ++r) {
    PROMOBANDIT_UNROLL(4)
    for (int v = 0; v < NV; ++v) {
      V s = acc[r][v];
      if (bias != nullptr) s = O::add(s, O::load(bias + 16 * v));
      O::store(out + r * ldo + 16 * v, s);
    }
  }
}

using MicroFn = void (*)(const float*, int64_t, const float*, float*, int64_t, const float*);

template <int... I>
inline const MicroFn* micro_table(std::integer_sequence<int, I...>) {
  static const MicroFn table[] = {&micro<I + 1>...};
  return table;
}

// ---------------------------------------------------------------------------
// Epilogue over one user's scores for one item block: eligibility, non-finite
// detection, top-k candidates (items arrive in increasing id order, so a
// strict `score > threshold` test keeps ties with the lowest ids), and the
// block's log-sum-exp partial (max, then sum of 2^((s - max) * log2(e) / T)
// in float lanes, lanes summed in double). `sc` holds round_up(cnt, 16) floats and is
// overwritten (ineligible -> -inf). Returns the lowest id with a non-finite
// score in the block, or -1.
inline int64_t epilogue(float* sc, int64_t i0, int64_t cnt, const RowCtx& row, float log2e_t,
                        Heap& heap, BlockLse& part) {
  int64_t bad = -1;
  const int64_t nvec = (cnt + 15) / 16;
  const V ninf = O::set1(-std::numeric_limits<float>::infinity());
  V vmax = ninf;
  bool all_live = true;  // no ineligible lane: pass 2 needs no mask
  float thr = heap.threshold();
  const int64_t* ex = nullptr;
  const int64_t* ex_end = nullptr;
  if (row.n_excl > 0) {
    ex_end = row.excl + row.n_excl;
    ex = std::lower_bound(row.excl, ex_end, i0);
  }
  // One vector of 16 scores, in item order: non-finite detection, eligibility, the
  // block max, and the top-k candidates above the heap's threshold.
  auto one = [&](int64_t v) {
    const int64_t base = i0 + 16 * v;
    const int n = static_cast<int>(std::min<int64_t>(16, cnt - 16 * v));
    uint32_t valid = n == 16 ? 0xFFFFu : ((1u << n) - 1u);
    V x = O::load(sc + 16 * v);
    const uint32_t nf = O::nonfinite_bits(x) & valid;
    if (nf != 0) {
      if (bad < 0) bad = base + ctz32(nf);
      valid &= ~nf;  // the call fails; keep NaN out of the heap meanwhile
    }
    uint32_t elig = valid;
    if (row.mask != nullptr) {
      if (n == 16) {
        elig &= O::nonzero_bytes(row.mask + base);
      } else {
        uint8_t tmp[16] = {};
        std::memcpy(tmp, row.mask + base, static_cast<size_t>(n));
        elig &= O::nonzero_bytes(tmp);
      }
    }
    for (; ex != ex_end && *ex < base + 16; ++ex) elig &= ~(1u << (*ex - base));
    if (elig != 0xFFFFu) {
      all_live = false;
      x = O::select(elig, x, ninf);
      O::store(sc + 16 * v, x);
    }
    vmax = O::max(vmax, x);
    uint32_t cand = O::gt_bits(x, O::set1(thr));
    if (cand != 0) {
      alignas(64) float t[16];
      O::store(t, x);
      for (; cand != 0; cand &= cand - 1) {
        const int j = ctz32(cand);
        heap.offer(t[j], base + j);
      }
      thr = heap.threshold();
    }
  };
  int64_t v = 0;
  if (row.mask == nullptr && row.n_excl == 0) {
    // Fast path, every item eligible: four full vectors per step, one branch for
    // "a non-finite score or a candidate somewhere among them" (rare once the heap is
    // full), which sends those four through `one` in order. The block max is the same
    // whatever the grouping: all scores are finite here (a non-finite one fails the
    // call), and max is exact (a +0 / -0 block max shifts every term alike).
    const int64_t nfull = cnt / 16;
    for (; v + 4 <= nfull; v += 4) {
      const V x0 = O::load(sc + 16 * v), x1 = O::load(sc + 16 * v + 16);
      const V x2 = O::load(sc + 16 * v + 32), x3 = O::load(sc + 16 * v + 48);
      const V t = O::set1(thr);
      const uint32_t flag = (O::nonfinite_bits(x0) | O::nonfinite_bits(x1) |
                             O::nonfinite_bits(x2) | O::nonfinite_bits(x3)) |
                            (O::gt_bits(x0, t) | O::gt_bits(x1, t) | O::gt_bits(x2, t) |
                             O::gt_bits(x3, t));
      if (flag != 0) {
        for (int j = 0; j < 4; ++j) one(v + j);
        continue;
      }
      vmax = O::max(vmax, O::max(O::max(x0, x1), O::max(x2, x3)));
    }
  }
  for (; v < nvec; ++v) one(v);
  part.m = O::hmax(vmax);
  part.s = 0.0;
  if (part.m == -std::numeric_limits<float>::infinity()) return bad;
  const V mv = O::set1(part.m), c = O::set1(log2e_t);
  V acc = O::zero();
  if (all_live) {
    for (int64_t v = 0; v < nvec; ++v) {
      acc = O::add(acc, exp2_neg(O::mul(O::sub(O::load(sc + 16 * v), mv), c)));
    }
  } else {
    for (int64_t v = 0; v < nvec; ++v) {
      const V x = O::load(sc + 16 * v);
      acc = O::add_masked(acc, exp2_neg(O::mul(O::sub(x, mv), c)), O::gt_bits(x, ninf));
    }
  }
  alignas(64) float lanes[16];
  O::store(lanes, acc);
  part.s = tree_sum16(lanes);
  return bad;
}

// ---------------------------------------------------------------------------
// Drivers.

template <class Tag, int R>
inline void small_worker(const TopkArgs& a, int64_t blo, int64_t bhi, Heap* heaps,
                         std::vector<BlockLse>& parts, int64_t nblocks, BadPair& bad) {
  using elem = typename Tag::elem;
  const elem* E = static_cast<const elem*>(a.items);
  const float log2e_t = log2e_over(a.temperature);
  std::vector<float> sc(static_cast<size_t>(R * kStreamBlock));
  for (int64_t b = blo; b < bhi; ++b) {
    const int64_t i0 = b * kStreamBlock;
    const int64_t cnt = std::min<int64_t>(kStreamBlock, a.n_items - i0);
    score_rows<Tag, R>(E, i0, cnt, a.dim, a.users, a.bias, sc.data());
    for (int r = 0; r < R; ++r) {
      const int64_t bb = epilogue(sc.data() + r * kStreamBlock, i0, cnt, row_ctx(a, r), log2e_t,
                                  heaps[r], parts[static_cast<size_t>(r * nblocks + b)]);
      if (bb >= 0) bad.offer(r, bb);
    }
  }
}

// B <= kSmallBatch users: threads split the item blocks; each block is read once
// for all users. Per-worker candidates and per-block partials are merged after.
template <class Tag, int R>
inline TopkStatus run_small(const TopkArgs& a, const TopkOutputs& o, int n_threads) {
  const int64_t nblocks = (a.n_items + kStreamBlock - 1) / kStreamBlock;
  const int t = std::max(1, resolve_threads(n_threads));
  std::vector<Heap> heaps(static_cast<size_t>(t * R), Heap(a.k));
  std::vector<BadPair> bad(static_cast<size_t>(t));
  std::vector<BlockLse> parts(static_cast<size_t>(R * nblocks));
  parallel_for(nblocks, t, kStreamSerialBlocks, [&](int64_t lo, int64_t hi, int w) {
    small_worker<Tag, R>(a, lo, hi, heaps.data() + static_cast<size_t>(w) * R, parts, nblocks,
                         bad[static_cast<size_t>(w)]);
  });
  TopkStatus st;
  BadPair first;
  for (const BadPair& b : bad) {
    if (b.user >= 0) first.offer(b.user, b.item);
  }
  if (first.user >= 0) {
    st.nonfinite_user = first.user;
    st.nonfinite_item = first.item;
    return st;
  }
  // Fixed merge order: log-sum-exp partials by block, candidates by (score, id).
  for (int r = 0; r < R; ++r) {
    RowLse lse;
    for (int64_t b = 0; b < nblocks; ++b) lse.merge(parts[static_cast<size_t>(r * nblocks + b)],
                                                     a.temperature);
    std::vector<Cand> all;
    for (int w = 0; w < t; ++w) {
      const std::vector<Cand>& c = heaps[static_cast<size_t>(w * R + r)].items();
      all.insert(all.end(), c.begin(), c.end());
    }
    if (!finalize_row(all, a.k, lse, a.temperature, o, r)) {
      st.short_user = r;
      return st;
    }
  }
  return st;
}

// Item blocks [blo, bhi) of the batched kernel against every user: each block is packed
// once (by the one thread that owns it) and scored by every user tile from L2. heaps: this
// worker's B heaps; parts[u * nblocks + b]: user u's share of the normaliser in block b.
template <class Tag>
inline void batch_worker(const TopkArgs& a, int64_t blo, int64_t bhi, Heap* heaps,
                         std::vector<BlockLse>& parts, int64_t nblocks, BadPair& bad) {
  using elem = typename Tag::elem;
  constexpr int MR = O::kMR;
  const elem* E = static_cast<const elem*>(a.items);
  const int64_t N = a.n_items, d = a.dim, B = a.n_users;
  const int64_t NB = batch_block(d);
  const float log2e_t = log2e_over(a.temperature);
  const MicroFn* table = micro_table(std::make_integer_sequence<int, MR>{});
  std::vector<float> packed(static_cast<size_t>(NB * d));
  std::vector<float> sbuf(static_cast<size_t>(MR * NB));
  std::vector<float> bias_blk(a.bias != nullptr ? static_cast<size_t>(NB) : 0);
  for (int64_t blk = blo; blk < bhi; ++blk) {
    const int64_t ib = blk * NB;
    const int64_t nb = std::min(NB, N - ib);
    const int64_t npanels = (nb + kNR - 1) / kNR;
    for (int64_t p = 0; p < npanels; ++p) {
      const int cnt = static_cast<int>(std::min<int64_t>(kNR, nb - p * kNR));
      pack_panel<Tag>(E, ib + p * kNR, cnt, d, packed.data() + p * kNR * d);
    }
    const float* bias = nullptr;
    if (a.bias != nullptr) {
      std::fill(bias_blk.begin(), bias_blk.end(), 0.0f);
      std::copy(a.bias + ib, a.bias + ib + nb, bias_blk.begin());
      bias = bias_blk.data();
    }
    for (int64_t r0 = 0; r0 < B; r0 += MR) {
      const int mr = static_cast<int>(std::min<int64_t>(MR, B - r0));
      const MicroFn fn = table[mr - 1];
      for (int64_t p = 0; p < npanels; ++p) {
        fn(a.users + r0 * d, d, packed.data() + p * kNR * d, sbuf.data() + p * kNR, NB,
           bias != nullptr ? bias + p * kNR : nullptr);
      }
      for (int r = 0; r < mr; ++r) {
        const int64_t user = r0 + r;
        const int64_t bb = epilogue(sbuf.data() + r * NB, ib, nb, row_ctx(a, user), log2e_t,
                                    heaps[user], parts[static_cast<size_t>(user * nblocks + blk)]);
        if (bb >= 0) bad.offer(user, bb);
      }
    }
  }
}

// More than kSmallBatch users: threads split the item blocks (each packed once, by its
// thread), every thread scores all users against its blocks; per-worker candidates and
// per-block partials are merged after in a fixed order (normaliser partials by block,
// candidates by score then id), so the result does not depend on the thread count.
template <class Tag>
inline TopkStatus run_batch(const TopkArgs& a, const TopkOutputs& o, int n_threads) {
  const int64_t B = a.n_users;
  const int64_t nblocks = (a.n_items + batch_block(a.dim) - 1) / batch_block(a.dim);
  const bool big = static_cast<double>(B) * static_cast<double>(a.n_items) *
                       static_cast<double>(a.dim) >= kBatchParallelMinWork;
  const int t = big ? std::max(1, resolve_threads(n_threads)) : 1;
  std::vector<Heap> heaps(static_cast<size_t>(t * B), Heap(a.k));
  std::vector<BlockLse> parts(static_cast<size_t>(B * nblocks));
  std::vector<BadPair> bad(static_cast<size_t>(t));
  parallel_for(nblocks, t, 1, [&](int64_t lo, int64_t hi, int w) {
    batch_worker<Tag>(a, lo, hi, heaps.data() + static_cast<size_t>(w) * B, parts, nblocks,
                      bad[static_cast<size_t>(w)]);
  });
  TopkStatus st;
  BadPair first;
  for (const BadPair& b : bad) {
    if (b.user >= 0) first.offer(b.user, b.item);
  }
  if (first.user >= 0) {
    st.nonfinite_user = first.user;
    st.nonfinite_item = first.item;
    return st;
  }
  std::vector<Cand> all;
  for (int64_t u = 0; u < B; ++u) {
    RowLse lse;
    for (int64_t b = 0; b < nblocks; ++b) lse.merge(parts[static_cast<size_t>(u * nblocks + b)],
                                                     a.temperature);
    all.clear();
    for (int w = 0; w < t; ++w) {
      const std::vector<Cand>& c = heaps[static_cast<size_t>(w * B + u)].items();
      all.insert(all.end(), c.begin(), c.end());
    }
    if (!finalize_row(all, a.k, lse, a.temperature, o, u)) {
      st.short_user = u;
      return st;
    }
  }
  return st;
}

template <class Tag>
inline TopkStatus run_typed(const TopkArgs& a, const TopkOutputs& o, int n_threads) {
  static_assert(kSmallBatch == 4, "run_typed dispatches R = 1..4");
  switch (a.n_users) {
    case 1: return run_small<Tag, 1>(a, o, n_threads);
    case 2: return run_small<Tag, 2>(a, o, n_threads);
    case 3: return run_small<Tag, 3>(a, o, n_threads);
    case 4: return run_small<Tag, 4>(a, o, n_threads);
    default: return run_batch<Tag>(a, o, n_threads);
  }
}

inline TopkStatus run(const TopkArgs& a, const TopkOutputs& o, int n_threads) {
  switch (a.item_type) {
    case ItemType::F16: return run_typed<F16>(a, o, n_threads);
    case ItemType::BF16: return run_typed<BF16>(a, o, n_threads);
    default: return run_typed<F32>(a, o, n_threads);
  }
}
