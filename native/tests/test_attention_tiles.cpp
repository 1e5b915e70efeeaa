// The tile arithmetic of the flash-attention kernels (native/common/attention_tiles.h, called by
// kernels/attention_fwd_wgmma.cu) against a brute-force enumeration of the causal mask, on the CPU
// build too: for every block of query rows, key_end is exactly one past the last key a real row of
// the block sees (so key_tiles loads every visible key and no tile wholly past the diagonal), and a
// tile that tile_masked calls unmasked is visible in full to every real row it is asked about.
// Lengths cover Tq < Tk, Tq > Tk (rows that see no key), lengths that are and are not multiples
// of the tiles, and the block / tile / consumer shapes the kernels use.
#include <cstdint>

#include "common/attention_tiles.h"
#include "testing.h"

namespace {

bool visible(int i, int j, int tq, int tk, bool causal) { return j < tk && (!causal || j <= i + (tk - tq)); }

}  // namespace

ATH_TEST(attention_tiles_key_range_and_masking) {
  namespace at = ath::attn_tiles;
  const int lens[] = {1, 2, 7, 63, 64, 65, 127, 128, 129, 200, 300};
  const int shapes[][3] = {{128, 128, 64}, {128, 64, 32}, {64, 128, 64}, {128, 32, 128}};  // block rows, bn, sub-block rows
  int64_t checked = 0;
  for (int tq : lens)
    for (int tk : lens)
      for (int causal = 0; causal < 2; ++causal)
        for (const auto& sh : shapes) {
          const int bm = sh[0], bn = sh[1], sub = sh[2];
          for (int m0 = 0; m0 < tq; m0 += bm) {
            const int rows_end = m0 + bm < tq ? m0 + bm : tq;
            int last = -1;  // the last key any real row of the block sees
            for (int i = m0; i < rows_end; ++i)
              for (int j = 0; j < tk; ++j)
                if (visible(i, j, tq, tk, causal) && j > last) last = j;
            const int end = at::key_end(m0, bm, tq, tk, causal != 0);
            ATH_EXPECT(end == last + 1, "tq=%d tk=%d causal=%d m0=%d bm=%d: key_end %d, expected %d", tq, tk, causal, m0,
                       bm, end, last + 1);
            const int tiles = at::key_tiles(end, bn);
            ATH_EXPECT(tiles * bn >= last + 1 && (tiles == 0 || (tiles - 1) * bn <= last),
                       "tq=%d tk=%d causal=%d m0=%d bn=%d: %d key tiles for keys [0, %d)", tq, tk, causal, m0, bn,
                       tiles, last + 1);
            // Soundness of tile_masked for each sub-block of rows [r0, r0 + sub) (a consumer's rows).
            for (int r0 = m0; r0 < m0 + bm; r0 += sub)
              for (int t = 0; t < tiles; ++t) {
                const int n0 = t * bn;
                if (at::tile_masked(n0, bn, r0, tq, tk, causal != 0)) continue;
                for (int i = r0; i < r0 + sub && i < tq; ++i)
                  for (int j = n0; j < n0 + bn; ++j) {
                    ++checked;
                    if (!visible(i, j, tq, tk, causal)) {
                      ATH_EXPECT(false, "tq=%d tk=%d causal=%d: tile n0=%d (bn=%d) unmasked for rows from %d, but row %d "
                                 "does not see key %d", tq, tk, causal, n0, bn, r0, i, j);
                      return;
                    }
                  }
              }
          }
        }
  ATH_EXPECT(checked > 0, "no unmasked tile was checked");
  // Without causal masking a tile inside Tk needs no mask; with it, the diagonal tile does.
  ATH_EXPECT(!at::tile_masked(0, 128, 0, 300, 300, false), "a full tile without causal masking is unmasked");
  ATH_EXPECT(at::tile_masked(128, 128, 128, 300, 300, true), "the diagonal tile is masked");
  ATH_EXPECT(at::tile_masked(256, 128, 0, 300, 300, false), "the tile reaching past Tk is masked");
}
