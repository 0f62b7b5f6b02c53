// Boundary checks shared by the CPU ops: device, layout and dtype of every argument.
#pragma once
#include <ATen/ATen.h>

namespace vtpack_mm {

inline void check_cpu_contiguous(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor, got ", t.device());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline void check_index(const at::Tensor& t, const char* name) {
  check_cpu_contiguous(t, name);
  TORCH_CHECK(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
}

inline void check_like(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  check_cpu_contiguous(t, name);
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), name, " must be ", ref.scalar_type(),
              ", got ", t.scalar_type());
}

}  // namespace vtpack_mm
