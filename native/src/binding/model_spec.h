// The model spec both NativeModel and NativeTrainer are built from: { config, files, tensors, threads }, as
// src/engine/native-spec.ts writes it. Parsed once here, with every byte range re-validated against the mapped
// files, so that nothing reaches the engine unchecked.
#pragma once
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "model/model.h"

namespace lnjs {

struct ParsedModelSpec {
  ln::ModelConfig config;
  ln::ModelWeights weights;  // pointers into `files`; lm_head = embed when tied
  std::vector<std::shared_ptr<ln::MappedFile>> files;
  int64_t threads = 1;
};

// Throws a JS TypeError/RangeError/Error naming the field (prefixed with `what`, e.g. "model spec").
ParsedModelSpec parse_model_spec(Napi::Env env, const Napi::Object& spec, const std::string& what);

}  // namespace lnjs
