// The CUDA trainer (cuda_trainer.h): set-up, the trainable state and AdamW, the forward with the LM head's
// cross-entropy in chunks or the classification head; the backward is in cuda_trainer_backward.cpp.
#include "cuda/cuda_trainer.h"

namespace ln {
namespace train {

using cuda::DeviceBuffer;
using cuda_model::CudaRuntime;
using cuda_model::LayerSave;

CudaTrainer::CudaTrainer(const ModelConfig& cfg, const ModelWeights& w, int device, Compute compute,
                         const std::vector<TrainableSpec>& spec, const TrainerOptions& options)
    : cfg_(cfg), opt_(options), lay_(build_param_layout(cfg, w, spec, options)), device_(device), compute_(compute),
      bf16_(compute == Compute::BF16), gdt_(bf16_ ? DType::BF16 : DType::F32), ge_(bf16_ ? 2 : 4) {
  const Param& e = lay_.params[0];
  if (e.trainable() && e.stored.dtype != DType::BF16 && e.stored.dtype != DType::F32)
    fail("a trainable embedding must be stored as BF16 or F32 on the CUDA trainer (this one is " +
         std::string(dtype_name(e.stored.dtype)) + ")");
  rt_ = std::make_unique<CudaRuntime>(cfg, w, device, compute);
  s_ = rt_->stream_;
  for (const Param& p : lay_.params) any_gather_ = any_gather_ || gathers_input(p);
  cuda::set_device(device_);

  // Arenas: master from the shared initial values, the rest zero. The zeros go on s_, the stream of the copy of
  // the initial values below, so that the two are ordered (the legacy stream's cudaMemset is not, with s_).
  const int64_t n = std::max<int64_t>(lay_.n_trainable, 1);
  allocating("the optimizer state of " + std::to_string(lay_.n_trainable) +
                 " trainable parameters (master weights, gradients, Adam moments) on cuda:" + std::to_string(device_),
             4.0 * double(n) * 4, [&] {
    for (DeviceBuffer* b : {&master_, &grad_, &m_, &v_}) {
      b->ensure(size_t(n) * 4);
      cuda::memset_async(b->get(), 0, size_t(n) * 4, s_);
    }
  }, "train fewer parameters (--method neurons or lora) or use a GPU with more memory");
  std::vector<float> init(size_t(lay_.n_trainable));
  init_master_values(lay_, opt_.seed, init.data());
  if (!init.empty()) cuda::copy_to_device(master_.get(), init.data(), init.size() * 4, s_);

  // Index lists of rows / cols parameters, back to back.
  std::vector<int32_t> all;
  index_off_.assign(lay_.params.size(), 0);
  for (size_t i = 0; i < lay_.params.size(); ++i) {
    index_off_[i] = int64_t(all.size());
    all.insert(all.end(), lay_.params[i].index.begin(), lay_.params[i].index.end());
  }
  index_.ensure(std::max<size_t>(all.size(), 1) * 4);
  if (!all.empty()) cuda::copy_to_device(index_.get(), all.data(), all.size() * 4, s_);

  // Where each checkpoint tensor lives in the runtime's arena (q/k/v and gate/up are fused row blocks).
  const int64_t H = cfg.hidden, I = cfg.intermediate, qd = int64_t(cfg.n_heads) * cfg.head_dim,
                kvd = int64_t(cfg.n_kv_heads) * cfg.head_dim;
  const DType wdt = rt_->wdt_;
  const size_t we = dtype_size(wdt);
  dev_w_.assign(lay_.params.size(), DevWeight{});
  auto at = [](const void* p, size_t bytes) { return static_cast<char*>(const_cast<void*>(p)) + bytes; };
  dev_w_[0] = {const_cast<void*>(rt_->embed_), rt_->embed_dtype_, nullptr};
  if (cfg.tie_embeddings && rt_->lm_head_ != rt_->embed_) dev_w_[0].tied_copy = const_cast<void*>(rt_->lm_head_);
  const float norm_add = cfg.norm == NormType::RmsOnePlus ? 1.f : 0.f;
  dev_w_[1] = {const_cast<float*>(rt_->final_norm_), DType::F32, nullptr, norm_add};
  if (!cfg.tie_embeddings) dev_w_[2] = {const_cast<void*>(rt_->lm_head_), wdt, nullptr};
  for (int l = 0; l < cfg.n_layers; ++l) {
    const cuda_model::DevLayer& L = rt_->layers_[size_t(l)];
    auto set = [&](int role, void* p, DType dt, float add = 0.f) {
      dev_w_[size_t(layer_param_index(l, role))] = {p, dt, nullptr, add};
    };
    set(kWq, at(L.wqkv, 0), wdt);
    set(kWk, at(L.wqkv, size_t(qd * H) * we), wdt);
    set(kWv, at(L.wqkv, size_t((qd + kvd) * H) * we), wdt);
    set(kWo, at(L.wo, 0), wdt);
    set(kWGate, at(L.wgu, 0), wdt);
    set(kWUp, at(L.wgu, size_t(I * H) * we), wdt);
    set(kWDown, at(L.wdown, 0), wdt);
    set(kAttnNorm, at(L.attn_norm, 0), DType::F32, norm_add);
    if (L.ffn_norm) set(kFfnNorm, at(L.ffn_norm, 0), DType::F32, norm_add);  // none with cohere's parallel block
    if (cfg.post_norms) {
      set(kAttnPostNorm, at(L.attn_post_norm, 0), DType::F32, norm_add);
      set(kFfnPostNorm, at(L.ffn_post_norm, 0), DType::F32, norm_add);
    }
    if (cfg.qk_norm) {
      set(kQNorm, at(L.q_norm, 0), DType::F32);
      set(kKNorm, at(L.k_norm, 0), DType::F32);
    }
    if (cfg.qkv_bias) {
      set(kBq, at(L.bqkv, 0), DType::F32);
      set(kBk, at(L.bqkv, size_t(qd) * 4), DType::F32);
      set(kBv, at(L.bqkv, size_t(qd + kvd) * 4), DType::F32);
    }
  }
  cuda::synchronize(s_);
}

CudaTrainer::~CudaTrainer() {
  try {
    cuda::set_device(device_);
    cuda::synchronize(s_);
  } catch (...) {
  }
}

std::string CudaTrainer::describe() const {
  return "cuda:" + std::to_string(device_) + " trainer (" + rt_->info_.name + "), " + (bf16_ ? "bf16" : "f32") +
         " weights and activations, float32 master / optimizer state of " + std::to_string(lay_.n_trainable) +
         " trainable values" + (lay_.adapters.empty() ? "" : ", " + std::to_string(lay_.adapters.size()) + " LoRA adapters") +
         // (recorded in run.json: bit-identical resume needs the same cuBLASLt, which is found at run time)
         ", cuBLASLt " + rt_->gemm_->library().version_string();
}

float* CudaTrainer::arena_ptr(Arena a) const {
  switch (a) {
    case Arena::Master: return master_.as<float>();
    case Arena::Grad: return grad_.as<float>();
    case Arena::AdamM: return m_.as<float>();
    case Arena::AdamV: return v_.as<float>();
  }
  throw std::invalid_argument("trainer: unknown arena");
}

void CudaTrainer::read(Arena a, int64_t offset, int64_t n, float* host) {
  check_arena_range(offset, n, lay_.n_trainable);
  if (n == 0) return;
  cuda::set_device(device_);
  cuda::copy_to_host(host, arena_ptr(a) + offset, size_t(n) * 4, s_);
  cuda::synchronize(s_);
}

void CudaTrainer::write(Arena a, int64_t offset, int64_t n, const float* host) {
  check_arena_range(offset, n, lay_.n_trainable);
  if (n == 0) return;
  cuda::set_device(device_);
  cuda::copy_to_device(arena_ptr(a) + offset, host, size_t(n) * 4, s_);
  if (a == Arena::Master)  // the forward reads the device weights: refresh those the range touches
    for (size_t i = 0; i < lay_.params.size(); ++i) {
      const Param& p = lay_.params[i];
      if (p.trainable() && p.offset < offset + n && offset < p.offset + p.size) refresh_weight(int(i));
    }
  cuda::synchronize(s_);
}

void CudaTrainer::refresh_weight(int param) {
  const Param& p = lay_.params[size_t(param)];
  const DevWeight& d = dev_w_[size_t(param)];
  if (!p.trainable() || !d.w) return;
  const float* m = master_.as<float>() + p.offset;
  const int64_t R = p.stored.rows, C = p.stored.cols, n = int64_t(p.index.size());
  const cuda::MasterLayout layout = p.mode == ParamMode::Rows   ? cuda::MasterLayout::Rows
                                    : p.mode == ParamMode::Cols ? cuda::MasterLayout::Cols
                                                                : cuda::MasterLayout::Dense;
  const int32_t* idx = layout == cuda::MasterLayout::Dense ? nullptr : index_of(param);
  cuda::write_master(layout, m, R, C, idx, n, d.w, d.dtype, s_, d.add);
  if (d.tied_copy) cuda::write_master(layout, m, R, C, idx, n, d.tied_copy, rt_->wdt_, s_);
}

void CudaTrainer::read_weight(int param, float* host) {
  if (param < 0 || param >= int(lay_.params.size())) fail("read_weight: parameter " + std::to_string(param) + " out of range");
  const Param& p = lay_.params[size_t(param)];
  const DevWeight& d = dev_w_[size_t(param)];
  if (p.stored.empty() || !d.w) fail("read_weight: " + p.role + " has no checkpoint tensor");
  const int64_t n = p.stored.rows * p.stored.cols;
  if (d.add != 0.f) {  // a Gemma norm: the device holds 1 + w; w itself is the master copy or the checkpoint's
    if (p.trainable()) read(Arena::Master, p.offset, n, host);  // (norms train dense)
    else convert_to_f32(p.stored.data, p.stored.dtype, 0, n, host);
    return;
  }
  std::vector<unsigned char> raw(size_t(n) * dtype_size(d.dtype));
  cuda::set_device(device_);
  cuda::copy_to_host(raw.data(), d.w, raw.size(), s_);
  cuda::synchronize(s_);
  convert_to_f32(raw.data(), d.dtype, 0, n, host);
}

TrainingMemory CudaTrainer::memory() const {
  TrainingMemory m;
  m.weights = int64_t(rt_->arena_.bytes());
  const int64_t bytes = lay_.n_trainable * 4;
  m.master = bytes;
  m.grad = bytes;
  m.adam = 2 * bytes;
  m.activations = int64_t(acts_.bytes());
  const MemoryReport r = rt_->memory();  // the runtime's activation buffers, GEMM workspace, plans
  m.scratch = int64_t(work_.bytes() + plan_.bytes() + index_.bytes()) + r.activations + r.scratch;
  m.device_used = r.device_used;
  m.device_total = r.device_total;
  return m;
}

void CudaTrainer::zero_grad() {
  cuda::set_device(device_);
  if (clock_) clock_->begin(s_);  // a clocked span starts here and ends with step()
  cuda::memset_async(grad_.get(), 0, size_t(std::max<int64_t>(lay_.n_trainable, 1)) * 4, s_);
  tick(cuda::PhaseClock::Optimizer);
  cuda::synchronize(s_);
  micro_ = 0;
}

void CudaTrainer::clock_steps(bool on) {
  cuda::set_device(device_);
  if (on && !clock_) {
    clock_ = std::make_unique<cuda::PhaseClock>();
    clock_->begin(s_);  // until the next zero_grad()
  } else if (!on) {
    clock_.reset();
  }
  rt_->set_phase_clock(clock_.get());
}

std::vector<StepTime> CudaTrainer::step_times() const {
  std::vector<StepTime> out;
  if (!clock_) return out;
  cuda::set_device(device_);
  const cuda::PhaseClock::Totals t = clock_->totals();
  for (int p = 0; p < cuda::PhaseClock::kPhases; ++p)
    if (t.marks[size_t(p)] > 0)
      out.push_back({cuda::PhaseClock::name(cuda::PhaseClock::Phase(p)), t.ms[size_t(p)], t.marks[size_t(p)]});
  return out;
}

void CudaTrainer::reset_optimizer() {
  cuda::set_device(device_);
  for (DeviceBuffer* b : {&m_, &v_}) cuda::memset_async(b->get(), 0, b->bytes(), s_);
  cuda::synchronize(s_);
  t_ = 0;
}

double CudaTrainer::grad_norm() {
  if (lay_.n_trainable == 0) return 0;
  cuda::set_device(device_);
  ensure(std::max<int64_t>(cap_T_, 1));  // (the partials live in work_)
  cuda::sum_of_squares(grad_.as<float>(), lay_.n_trainable, sq_partials_, sq_out_, s_);
  double s = 0;
  cuda::copy_to_host(&s, sq_out_, sizeof(double), s_);
  cuda::synchronize(s_);
  return std::sqrt(s);
}

double CudaTrainer::step(const AdamWConfig& c) {
  check_adamw_config(c);
  const double norm = grad_norm();
  const AdamWStep s = adamw_step_scalars(c, norm, t_ + 1);
  ++t_;
  if (lay_.n_trainable == 0) return norm;
  cuda::set_device(device_);
  cuda::adamw_step(lay_.n_trainable, master_.as<float>(), grad_.as<float>(), m_.as<float>(), v_.as<float>(), c.beta1,
                   c.beta2, c.eps, s.step_size, s.bc2_sqrt, s.decay, s.clip_scale, s_);
  for (size_t i = 0; i < lay_.params.size(); ++i) refresh_weight(int(i));
  tick(cuda::PhaseClock::Optimizer);
  cuda::synchronize(s_);
  return norm;
}

// ---- forward ---------------------------------------------------------------------------------------------------

int32_t CudaTrainer::check_batch(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t n_tokens) {
  using std::to_string;
  const int32_t max_len = check_training_batch(cfg_, tokens, seq_lens, n_seqs, n_tokens);
  return max_len;
}

CudaTrainer::LayerNeeds CudaTrainer::needs(int l) const {
  const ModelConfig& c = cfg_;
  auto at = [&](int role) -> const Param& { return lay_.params[size_t(layer_param_index(l, role))]; };
  LayerNeeds n;
  bool attn_learns = false;
  for (int r : {kAttnNorm, kWq, kWk, kWv, kWo, kBq, kBk, kBv, kQNorm, kKNorm, kAttnPostNorm})
    attn_learns = attn_learns || at(r).learns();
  const bool below = l > lay_.lowest || lay_.params[0].trainable();  // a gradient is needed below this layer
  n.attn = below || attn_learns;
  n.dx1 = below || at(kAttnNorm).trainable();
  n.dx2 = c.parallel_block ? n.dx1 : n.attn || at(kFfnNorm).trainable();
  // A weight's dW reads its whole input unless only the selected columns are (gathers_input); an adapter reads it too.
  auto whole_input = [&](std::initializer_list<int> roles) {
    for (int r : roles) {
      const Param& p = at(r);
      if (p.lora >= 0 || (p.trainable() && !gathers_input(p))) return true;
    }
    return false;
  };
  n.hin = n.dx1;  // (the attention norm's backward; n.dx1 implies n.attn)
  n.x1 = n.attn && whole_input({kWq, kWk, kWv});
  n.attg = n.attn && whole_input({kWo});
  n.hmid = n.dx2 && !c.parallel_block;
  n.x2 = whole_input({kWGate, kWUp});
  n.act = whole_input({kWDown});
  return n;
}

CudaTrainer::SaveMembers CudaTrainer::kept_members(const LayerNeeds& n) const {
  const ModelConfig& c = cfg_;
  SaveMembers k{};
  k[kHin] = n.hin;
  k[kX1] = n.x1;
  for (SaveMember m : {kQ, kK, kV, kAtt, kLse}) k[m] = n.attn;
  k[kAttg] = n.attg;
  k[kHmid] = n.hmid;
  k[kX2] = n.x2;
  k[kGu] = true;  // (the FFN's backward always runs in a layer that keeps anything)
  k[kAct] = n.act;
  k[kQkPre] = c.qk_norm && n.attn;
  k[kOPre] = c.post_norms && n.attn;
  k[kDownPre] = c.post_norms;
  return k;
}

cuda_model::LayerSave CudaTrainer::save_at(const SaveOffsets& o) const {
  char* A = acts_.as<char>();
  auto at = [&](SaveMember m) -> void* { return o[m] == kNoSave ? nullptr : A + o[m]; };
  auto f32 = [&](SaveMember m) { return static_cast<float*>(at(m)); };
  cuda_model::LayerSave s;
  s.hin = f32(kHin);
  s.x1 = at(kX1);
  s.q = at(kQ);
  s.k = at(kK);
  s.v = at(kV);
  s.att = at(kAtt);
  s.lse = f32(kLse);
  s.attg = at(kAttg);
  s.hmid = f32(kHmid);
  s.x2 = at(kX2);
  s.gu = at(kGu);
  s.act = at(kAct);
  s.qk_pre = f32(kQkPre);
  s.o_pre = f32(kOPre);
  s.down_pre = f32(kDownPre);
  return s;
}

// The activation arena for T tokens (the layers at or above the lowest trainable one) and the work buffers.
void CudaTrainer::ensure(int64_t T) {
  if (T <= cap_T_ && acts_.get()) return;
  cap_T_ = std::max(T, cap_T_);
  T = cap_T_;
  const ModelConfig& c = cfg_;
  const int64_t H = c.hidden, I = c.intermediate, V = c.vocab, nh = c.n_heads, qd = nh * c.head_dim,
                kvd = int64_t(c.n_kv_heads) * c.head_dim, QKV = qd + 2 * kvd;
  const int L = c.n_layers, first = std::max(lay_.lowest, 0);
  struct Plan {
    size_t at = 0;
    size_t take(size_t bytes) {
      const size_t off = at;
      at = cuda_model::align_up(at + std::max<size_t>(bytes, 1), 256);
      return off;
    }
  };
  // Activations: what each layer's backward reads (kept_members(needs(l))); with recompute, only each layer's input,
  // and one set of the rest (every member some layer keeps) that the layer being recomputed fills.
  Plan pa;
  // q / k / v and the attention output in the attention's dtype: bf16 where it runs on tensor cores, and then the
  // output wo reads is the one the attention's backward reads (the same bf16 values: kept once).
  const bool tc = rt_->tensor_core_attention();
  const size_t ae = tc ? 2 : 4, ge = ge_;
  struct Shape {
    int64_t width;
    size_t bytes;
  };
  const std::array<Shape, kMembers> shape = {{{H, 4}, {H, ge}, {qd, ae}, {kvd, ae}, {kvd, ae}, {qd, ae}, {nh, 4},
                                              {qd, ge}, {H, 4}, {H, ge}, {2 * I, ge}, {I, ge}, {qd + kvd, 4}, {H, 4},
                                              {H, 4}}};  // in SaveMember's order
  auto save_set = [&](const SaveMembers& keep) -> SaveOffsets {
    SaveOffsets o;
    o.fill(kNoSave);
    for (int m = 0; m < kMembers; ++m) {
      if (!keep[size_t(m)]) continue;
      if (m == kAttg && tc && keep[kAtt]) o[kAttg] = o[kAtt];  // (kAtt comes first)
      else o[size_t(m)] = pa.take(size_t(T * shape[size_t(m)].width) * shape[size_t(m)].bytes);
    }
    return o;
  };
  const bool rc = opt_.recompute;
  std::vector<SaveOffsets> lo(static_cast<size_t>(L));
  SaveMembers any{};  // with recompute: every member some layer keeps, but the input
  for (int l = first; l < L; ++l) {
    SaveMembers keep = kept_members(needs(l));
    if (rc) {  // the layer's input (what it is recomputed from), the rest in the shared set
      for (int m = 0; m < kMembers; ++m) any[size_t(m)] = any[size_t(m)] || (m != kHin && keep[size_t(m)]);
      keep.fill(false);
      keep[kHin] = true;
    }
    lo[size_t(l)] = save_set(keep);
  }
  shared_offsets_ = save_set(any);  // (empty without recompute; its input: the recomputed layer's own)
  // The selected input columns of Cols weights, kept by the forward (also with recompute: they are small).
  std::vector<size_t> o_sel_x(lay_.params.size(), kNoSave);
  for (size_t i = 0; i < lay_.params.size(); ++i) {
    const Param& p = lay_.params[i];
    if (gathers_input(p) && p.layer >= first) o_sel_x[i] = pa.take(size_t(T * sel_ld(int64_t(p.index.size()))) * ge_);
  }
  const size_t o_xf = pa.take(size_t(T * H) * 4), o_xfg = bf16_ ? pa.take(size_t(T * H) * 2) : o_xf;
  std::vector<size_t> o_lora;
  int64_t max_r = 0, max_lora_k = 0;
  bool any_dropout = false;
  for (const LoraAdapter& ad : lay_.adapters) {
    o_lora.push_back(pa.take(size_t(T * ad.r) * 4));
    max_r = std::max<int64_t>(max_r, ad.r);
    max_lora_k = std::max(max_lora_k, lay_.params[size_t(ad.base)].stored.cols);
    any_dropout = any_dropout || ad.dropout > 0;
  }
  acts_.release();
  allocating("the trainer's activations for " + std::to_string(T) + " tokens on cuda:" + std::to_string(device_),
             double(pa.at), [&] { acts_.ensure(pa.at); }, "fewer tokens per micro-batch (--batch / --chunk)");
  char* A = acts_.as<char>();
  saves_.assign(size_t(L), LayerSave{});
  for (int l = first; l < L; ++l) saves_[size_t(l)] = save_at(lo[size_t(l)]);
  recompute_saves_.assign(size_t(L), LayerSave{});
  x_sel_.assign(lay_.params.size(), nullptr);
  for (size_t i = 0; i < lay_.params.size(); ++i)
    if (o_sel_x[i] != kNoSave) x_sel_[i] = A + o_sel_x[i];
  xf_ = reinterpret_cast<float*>(A + o_xf);
  xfg_ = A + o_xfg;
  lora_h_.clear();
  for (size_t o : o_lora) lora_h_.push_back(reinterpret_cast<float*>(A + o));

  // Work buffers.
  // Selected features, a rows/cols tensor, its N x n, a Cols gradient's N x sel_ld(n).
  int64_t max_sel = 0, max_dense = 0, max_nsel = 0, max_cols_dw = 0;
  for (const Param& p : lay_.params) {
    if (p.mode == ParamMode::Rows || p.mode == ParamMode::Cols || p.mode == ParamMode::LoraB)
      max_sel = std::max<int64_t>(max_sel, int64_t(p.index.size()));
    if (p.mode == ParamMode::Rows || p.mode == ParamMode::Cols) {
      max_dense = std::max(max_dense, p.stored.rows * p.stored.cols);
      max_nsel = std::max(max_nsel, p.stored.rows * int64_t(p.index.size()));
    }
    if (p.mode == ParamMode::Cols && !opt_.dense_then_mask)
      max_cols_dw = std::max(max_cols_dw, p.stored.rows * sel_ld(int64_t(p.index.size())));
  }
  const int64_t M = std::max(T, kLmChunk), wide = std::max({H, qd, QKV, 2 * I});
  // dgu in float32: the f32 mode's GEMM operand, or an adapter's on gate / up (the bf16 mode's GEMMs read the bf16
  // one the SwiGLU backward writes into g_).
  bool f32_dgu = !bf16_;
  for (const LoraAdapter& ad : lay_.adapters) f32_dgu = f32_dgu || ad.role == kWGate || ad.role == kWUp;
  Plan pw;
  const size_t o_dh = pw.take(size_t(T * H) * 4), o_dx = pw.take(size_t(T * std::max({H, qd, kvd})) * 4),
               o_datt = pw.take(size_t(T * qd) * 4), o_dqkv = pw.take(size_t(T * QKV) * 4),
               o_da = pw.take(size_t(T * I) * 4), o_dgu = pw.take(size_t(f32_dgu ? T * 2 * I : 0) * 4),
               o_dxf = pw.take(size_t(T * H) * 4), o_chunk = pw.take(size_t(kLmChunk * V) * 4),
               o_chunkg = bf16_ ? pw.take(size_t(kLmChunk * V) * 2) : o_chunk,
               o_g = pw.take(size_t(T * wide) * ge_),
               o_conv = pw.take(size_t(bf16_ ? T * max_lora_k : 0) * 4),  // LoRA's float32 copy of a bf16 input
               o_sel = pw.take(size_t(M * sel_ld(max_sel)) * 4), o_dw_sel = pw.take(size_t(max_cols_dw) * 4),
               o_sel2 = pw.take(size_t(opt_.dense_then_mask ? max_nsel : 0) * 4),
               o_dense = pw.take(size_t(opt_.dense_then_mask ? max_dense : 0) * 4),
               o_part = pw.take(size_t(std::max({cuda::layernorm_dw_partials(T, H), cuda::colsum_partials(T, QKV),
                                                  cuda::rmsnorm_dw_partials(T * nh, c.head_dim), int64_t(1)})) * 4),
               o_dpost = pw.take(size_t(c.post_norms ? T * H : 0) * 4),
               o_capped = pw.take(size_t(c.final_softcap > 0 ? kLmChunk * V : 0) * 4),
               o_drows = pw.take(size_t(T * nh) * 4), o_rl = pw.take(size_t(T) * 8),
               o_sqp = pw.take(size_t(cuda::sumsq_partials(std::max<int64_t>(lay_.n_trainable, 1))) * 8),
               o_sqo = pw.take(8), o_tg = pw.take(size_t(T) * 4),
               o_lx = pw.take(size_t(any_dropout ? T * max_lora_k : 0) * 4), o_ldh = pw.take(size_t(T * max_r) * 4);
  work_.release();
  allocating("the trainer's backward buffers for " + std::to_string(T) + " tokens on cuda:" + std::to_string(device_),
             double(pw.at), [&] { work_.ensure(pw.at); }, "fewer tokens per micro-batch (--batch / --chunk)");
  char* W = work_.as<char>();
  auto f = [&](size_t o) { return reinterpret_cast<float*>(W + o); };
  dh_ = f(o_dh); dx_ = f(o_dx); datt_ = f(o_datt); dqkv_ = f(o_dqkv); da_ = f(o_da);
  dgu_ = f32_dgu ? f(o_dgu) : nullptr;
  dxf_ = f(o_dxf); chunk_ = f(o_chunk); chunk_g_ = W + o_chunkg; g_ = W + o_g; conv_ = f(o_conv);
  sel_ = f(o_sel); dw_sel_ = f(o_dw_sel); sel2_ = f(o_sel2); dense_dw_ = f(o_dense); partials_ = f(o_part); d_rows_ = f(o_drows);
  dpost_ = c.post_norms ? f(o_dpost) : nullptr;
  capped_ = c.final_softcap > 0 ? f(o_capped) : nullptr;
  row_loss_ = reinterpret_cast<double*>(W + o_rl);
  sq_partials_ = reinterpret_cast<double*>(W + o_sqp);
  sq_out_ = reinterpret_cast<double*>(W + o_sqo);
  targets_dev_ = reinterpret_cast<int32_t*>(W + o_tg);
  lora_x_ = f(o_lx);
  lora_dh_ = f(o_ldh);

  // Per-token plans of the backward (sequence rows and lengths, the embedding's token groups).
  Plan pp;
  const size_t o_r0 = pp.take(size_t(T) * 8), o_len = pp.take(size_t(T) * 4), o_ord = pp.take(size_t(T) * 8),
               o_gt = pp.take(size_t(T) * 4), o_gs = pp.take(size_t(T + 1) * 8);
  plan_.release();
  plan_.ensure(pp.at);
  char* Q = plan_.as<char>();
  seq_row0_ = reinterpret_cast<int64_t*>(Q + o_r0);
  seq_len_ = reinterpret_cast<int32_t*>(Q + o_len);
  order_ = reinterpret_cast<int64_t*>(Q + o_ord);
  group_token_ = reinterpret_cast<int32_t*>(Q + o_gt);
  group_start_ = reinterpret_cast<int64_t*>(Q + o_gs);
}

// The runtime's forward with the save hook, then the final norm of every row (float32 and the GEMM dtype).
void CudaTrainer::forward(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs, int64_t T) {
  cuda::set_device(device_);
  ensure(T);
  ForwardRequest req;
  req.tokens = tokens;
  req.n_tokens = T;
  req.seq_lens = seq_lens;
  req.n_seqs = n_seqs;
  req.logits = LogitsMode::None;
  cur_T_ = T;
  rt_->forward_train(req, saves_, linear_hook());
  const int64_t H = cfg_.hidden;
  rt_->norm(T, rt_->h_.as<float>(), nullptr, rt_->final_norm_, xf_, false);
  if (bf16_) cuda::f32_to_bf16_rows(T, H, xf_, H, static_cast<uint16_t*>(xfg_), H, s_);
  tick(cuda::PhaseClock::Norm);

  // Sequence rows for the attention backward.
  seq_row0_host_.resize(size_t(T));
  seq_len_host_.resize(size_t(T));
  int64_t row = 0;
  for (int32_t s = 0; s < n_seqs; ++s) {
    for (int32_t i = 0; i < seq_lens[s]; ++i) {
      seq_row0_host_[size_t(row + i)] = row;
      seq_len_host_[size_t(row + i)] = seq_lens[s];
    }
    row += seq_lens[s];
  }
  cuda::copy_to_device(seq_row0_, seq_row0_host_.data(), size_t(T) * 8, s_);
  cuda::copy_to_device(seq_len_, seq_len_host_.data(), size_t(T) * 4, s_);
}

BatchLoss CudaTrainer::forward_backward(const int32_t* tokens, const int32_t* targets, const int32_t* seq_lens,
                                        int32_t n_seqs, int64_t n_tokens, double denominator, bool backward,
                                        int64_t dropout_step, int64_t dropout_micro) {
  if (!targets) fail("tokens, targets and seq_lens are required");
  check_batch(tokens, seq_lens, n_seqs, n_tokens);
  const int64_t count = count_training_targets(cfg_, targets, n_tokens);
  if (!(denominator > 0)) denominator = double(count);
  BatchLoss out;
  out.count = count;
  if (count == 0) return out;

  const int64_t T = n_tokens, H = cfg_.hidden, V = cfg_.vocab;
  set_dropout(backward, dropout_step, dropout_micro);
  forward(tokens, seq_lens, n_seqs, T);
  const bool bw = backward && lay_.any_trainable;
  cuda::copy_to_device(targets_dev_, targets, size_t(T) * 4, s_);
  const float scale = float(1.0 / denominator);
  const int head = lay_.find(cfg_, "lm_head", -1);
  cuda::Gemm& gemm = *rt_->gemm_;
  // Chunks of consecutive rows: logits, cross-entropy (rows without a target give zero), and with `backward` the
  // head's backward right away (dlogits never exist for more than kLmChunk rows).
  for (int64_t i0 = 0; i0 < T; i0 += kLmChunk) {
    const int64_t m = std::min(kLmChunk, T - i0);
    const void* xg = static_cast<const char*>(xfg_) + size_t(i0 * H) * ge_;
    gemm.run(m, V, H, xg, H, rt_->lm_head_, H, rt_->wdt_, chunk_, V, false, s_);
    const float ls = cfg_.logit_scale, cap = cfg_.final_softcap;  // Cohere, Gemma 2 (1 and 0 for the others)
    cuda::finish_logits(m, V, chunk_, V, ls, cap, s_);
    if (cap > 0 && bw) cuda::copy_device(capped_, chunk_, size_t(m * V) * 4, s_);
    cuda::crossentropy_backward(m, V, chunk_, V, targets_dev_ + i0, scale, row_loss_ + i0, s_);
    if (!bw) continue;
    cuda::logits_chain(m, V, chunk_, V, capped_, V, ls, cap, s_);
    const void* dlg = to_gemm(chunk_, m, V, V, chunk_g_);
    gemm.run_dx(m, V, H, dlg, V, rt_->lm_head_, H, rt_->wdt_, dxf_ + i0 * H, H, false, s_);
    weight_grad(head, m, dlg, V, xg, H);
  }
  row_loss_host_.resize(size_t(T));
  cuda::copy_to_host(row_loss_host_.data(), row_loss_, size_t(T) * 8, s_);
  tick(cuda::PhaseClock::Loss);
  cuda::synchronize(s_);
  for (int64_t t = 0; t < T; ++t)
    if (targets[t] >= 0) out.sum += row_loss_host_[size_t(t)];
  if (!bw) return out;
  backward_layers(tokens, T);
  cuda::synchronize(s_);
  ++micro_;
  return out;
}

// The classification head on the host (C is tiny), as train/head.cpp: the last row of each sequence, final-normed,
// times the score matrix; its gradient and d(final-normed states) go back to the device.
BatchLoss CudaTrainer::forward_backward_cls(const int32_t* tokens, const int32_t* seq_lens, int32_t n_seqs,
                                            int64_t n_tokens, const int32_t* labels, double denominator,
                                            bool backward, float* logits, int64_t dropout_step,
                                            int64_t dropout_micro) {
  if (lay_.head < 0) fail("this trainer has no classification head (num_labels = 0)");
  if (!labels) fail("labels are required (one per sequence, -1: none)");
  check_batch(tokens, seq_lens, n_seqs, n_tokens);
  const int64_t C = opt_.num_labels, H = cfg_.hidden, T = n_tokens;
  const int64_t count = count_training_labels(labels, n_seqs, C);
  if (!(denominator > 0)) denominator = double(count);
  BatchLoss out;
  out.count = count;
  if (count == 0 && !logits) return out;
  set_dropout(backward && count > 0, dropout_step, dropout_micro);
  forward(tokens, seq_lens, n_seqs, T);

  const Param& hp = lay_.params[size_t(lay_.head)];
  const Param* bp = lay_.head_bias >= 0 ? &lay_.params[size_t(lay_.head_bias)] : nullptr;
  host_w_.resize(size_t(hp.size + (bp ? bp->size : 0)));  // W, then the bias
  cuda::copy_to_host(host_w_.data(), master_.as<float>() + hp.offset, size_t(hp.size) * 4, s_);
  if (bp) cuda::copy_to_host(host_w_.data() + hp.size, master_.as<float>() + bp->offset, size_t(bp->size) * 4, s_);
  host_x_.resize(size_t(n_seqs * H));
  int64_t row = 0;
  for (int32_t s = 0; s < n_seqs; ++s) {
    row += seq_lens[s];
    cuda::copy_to_host(host_x_.data() + int64_t(s) * H, xf_ + (row - 1) * H, size_t(H) * 4, s_);
  }
  cuda::synchronize(s_);
  const float* Wc = host_w_.data();
  const float* bias = bp ? host_w_.data() + hp.size : nullptr;
  cls_logits_.resize(size_t(n_seqs * C));
  for (int32_t s = 0; s < n_seqs; ++s) {
    const float* x = host_x_.data() + int64_t(s) * H;
    float* z = cls_logits_.data() + int64_t(s) * C;
    cls_logits(Wc, bias, C, H, x, z);
    if (labels[s] >= 0) out.sum += cls_loss(z, C, labels[s]);
  }
  if (logits) std::memcpy(logits, cls_logits_.data(), size_t(n_seqs * C) * sizeof(float));
  if (!backward || count == 0) return out;

  const double scale = 1.0 / denominator;
  host_g_.resize(size_t(hp.size + (bp ? bp->size : 0)));
  cuda::copy_to_host(host_g_.data(), grad_.as<float>() + hp.offset, size_t(hp.size) * 4, s_);
  if (bp) cuda::copy_to_host(host_g_.data() + hp.size, grad_.as<float>() + bp->offset, size_t(bp->size) * 4, s_);
  cuda::memset_async(dxf_, 0, size_t(T * H) * 4, s_);
  cuda::synchronize(s_);
  std::vector<float> dx(static_cast<size_t>(H));
  row = 0;
  for (int32_t s = 0; s < n_seqs; ++s) {
    row += seq_lens[s];
    if (labels[s] < 0) continue;
    const float* x = host_x_.data() + int64_t(s) * H;
    std::fill(dx.begin(), dx.end(), 0.f);
    cls_backward(Wc, C, H, x, cls_logits_.data() + int64_t(s) * C, labels[s], scale, host_g_.data(),
                 bp ? host_g_.data() + hp.size : nullptr, dx.data());
    cuda::copy_to_device(dxf_ + (row - 1) * H, dx.data(), size_t(H) * 4, s_);
    cuda::synchronize(s_);  // dx is reused
  }
  cuda::copy_to_device(grad_.as<float>() + hp.offset, host_g_.data(), size_t(hp.size) * 4, s_);
  if (bp) cuda::copy_to_device(grad_.as<float>() + bp->offset, host_g_.data() + hp.size, size_t(bp->size) * 4, s_);
  tick(cuda::PhaseClock::Loss);
  backward_layers(tokens, T);
  cuda::synchronize(s_);
  ++micro_;
  return out;
}


std::unique_ptr<TrainingRuntime> make_cuda_trainer(const ModelConfig& config, const ModelWeights& weights,
                                                   int device_index, Compute compute,
                                                   const std::vector<TrainableSpec>& spec,
                                                   const TrainerOptions& options) {
  check_cuda_supported(config, weights, device_index, compute, "CUDA trainer");
  return std::make_unique<CudaTrainer>(config, weights, device_index, compute, spec, options);
}

}  // namespace train
}  // namespace ln
