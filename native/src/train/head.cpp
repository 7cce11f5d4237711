// The classification head of the trainer (Mondal et al.'s XNLI setting; Hugging Face LlamaForSequenceClassification):
// logits = score · h_last (+ score_bias), where h_last is the final-normed hidden state of each sequence's last token (the packed
// batch has no padding, so the last token is the last row of the sequence); loss = sum of the labelled sequences'
// cross-entropies / denominator. The backward puts score^T dlogits into those rows of d(final-normed states) and
// runs the model's backward from there, so the head trains along any method.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "train/cls_head.h"
#include "train/trainer.h"

namespace ln {
namespace train {

namespace {
[[noreturn]] void fail(const std::string& m) { throw std::invalid_argument("trainer: " + m); }
}  // namespace

BatchLoss Trainer::forward_backward_cls(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t n_tokens,
                                        const int32_t* labels, double denominator, bool backward, float* logits,
                                        int64_t dropout_step, int64_t dropout_micro) {
  if (lay_.head < 0) fail("this trainer has no classification head (num_labels = 0)");
  if (!labels) fail("labels are required (one per sequence, -1: none)");
  const int32_t max_len = check_batch(tokens, seq_lens, n_seqs, n_tokens);
  const int64_t C = opt_.num_labels, H = cfg_.hidden, T = n_tokens;
  const int64_t count = count_training_labels(labels, n_seqs, C);
  if (!(denominator > 0)) denominator = double(count);
  BatchLoss out;
  out.count = count;
  if (count == 0 && !logits) return out;

  set_dropout(backward && count > 0, dropout_step, dropout_micro);
  forward_layers(tokens, seq_lens, n_seqs, T, max_len);

  // Logits and per-sequence softmax - onehot (scaled), in double: C is tiny.
  const Param& hp = lay_.params[size_t(lay_.head)];
  const float* W = master_.data() + hp.offset;
  const float* bias = lay_.head_bias >= 0 ? master_.data() + lay_.params[size_t(lay_.head_bias)].offset : nullptr;
  cls_logits_.resize(size_t(n_seqs * C));
  for (int32_t s = 0; s < n_seqs; ++s) {
    const float* x = xf_ + (seqs_[size_t(s)].row0 + seqs_[size_t(s)].len - 1) * H;
    float* z = cls_logits_.data() + int64_t(s) * C;
    cls_logits(W, bias, C, H, x, z);
    if (labels[s] >= 0) out.sum += cls_loss(z, C, labels[s]);
  }
  if (logits) std::memcpy(logits, cls_logits_.data(), size_t(n_seqs * C) * sizeof(float));
  if (!backward || count == 0) return out;

  // dlogits = (softmax - onehot) / denominator; dW += dlogits x^T; d xf[last] = W^T dlogits.
  const double scale = 1.0 / denominator;
  std::memset(dxf_, 0, size_t(T * H) * 4);
  float* gW = grad_.data() + hp.offset;
  float* gb = lay_.head_bias >= 0 ? grad_.data() + lay_.params[size_t(lay_.head_bias)].offset : nullptr;
  for (int32_t s = 0; s < n_seqs; ++s) {
    if (labels[s] < 0) continue;
    const int64_t row = seqs_[size_t(s)].row0 + seqs_[size_t(s)].len - 1;
    const float* x = xf_ + row * H;
    cls_backward(W, C, H, x, cls_logits_.data() + int64_t(s) * C, labels[s], scale, gW, gb, dxf_ + row * H);
  }
  backward_layers(tokens, T);
  ++micro_;
  return out;
}

}  // namespace train
}  // namespace ln
