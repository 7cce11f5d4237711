// The edits of a finished projection output (edit_pass.h).
#include "model/edit_pass.h"

namespace ln {
namespace detail {

void edit_block(ForwardState& st, Site site, int l, float* block, int64_t ld) {
  if (!editing(st, site, l)) return;
  const Edit *b = st.intervention->begin(l, site), *e = st.intervention->end(l, site);  // every unit of the site
  for_row_blocks(*st.pool, st.T, [&](int64_t r0, int64_t r1) {
    for (int64_t t = r0; t < r1; ++t) apply_edits(b, e, block + t * ld, 0, token_class(st, t), nullptr);
  });
}

}  // namespace detail
}  // namespace ln
