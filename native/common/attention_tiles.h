// Tile arithmetic of the flash-attention kernels, shared by host and device so that the host tests
// (test_cpu_ops.cpp: attention_tile_ranges) check the very functions the CUDA kernels call
// (kernels/attention_fwd_wgmma.cu).
//
// Causal masking is bottom-right aligned (athanor.h): query i of Tq sees key j of Tk iff
// j <= i + (Tk - Tq); without causal every key is visible. A block owns the query rows
// [m0, m0 + rows) (rows past Tq are padding) and walks key tiles [n0, n0 + bn), n0 = j * bn.
//   key_end      keys [0, key_end) hold every key visible to a real row of the block (0: none);
//   key_tiles    the tiles that cover them, ceil(key_end / bn): tiles past the causal diagonal are
//                never loaded;
//   tile_masked  whether a tile must be masked element-wise for rows [r0, r0 + rows): some key of
//                it lies past Tk or past the diagonal of the block's first row (which sees the
//                fewest keys); an unmasked tile is visible to every one of those rows in full.
#pragma once

#if defined(__CUDACC__)
#define ATH_ATTN_HD __host__ __device__ __forceinline__
#else
#define ATH_ATTN_HD inline
#endif

namespace ath::attn_tiles {

ATH_ATTN_HD int key_end(int m0, int rows, int tq, int tk, bool causal) {
  if (!causal) return tk;
  const int last_row = (m0 + rows < tq ? m0 + rows : tq) - 1;  // the block's last real row
  const int end = last_row + 1 + (tk - tq);                    // keys j <= last_row + tk - tq
  return end < 0 ? 0 : (end < tk ? end : tk);
}

ATH_ATTN_HD int key_tiles(int key_end_, int bn) { return key_end_ > 0 ? (key_end_ + bn - 1) / bn : 0; }

ATH_ATTN_HD bool tile_masked(int n0, int bn, int r0, int tq, int tk, bool causal) {
  return n0 + bn > tk || (causal && n0 + bn - 1 > r0 + (tk - tq));
}

}  // namespace ath::attn_tiles

#undef ATH_ATTN_HD
