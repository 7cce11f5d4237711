// The edits of a finished projection output (edit_pass.h).
#include "model/edit_pass.h"

namespace ln {
namespace detail {

void edit_block(ForwardState& st, Site site, int l, float* block, int64_t ld) {
  const EditRange er = edit_range(st, l, site, 0, st.intervention ? st.intervention->width(site) : 0);
  if (!er.any()) return;
  for_row_blocks(*st.pool, st.T, [&](int64_t r0, int64_t r1) {
    for (int64_t t = r0; t < r1; ++t) apply_edits(er.b, er.e, block + t * ld, 0, token_class(st, t), nullptr);
  });
}

}  // namespace detail
}  // namespace ln
