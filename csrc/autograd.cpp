// Autograd of clip_shift_normalize in C++ (the Autograd dispatch key, every backend).
//
// The op is called once per shifting step on small inputs (n x 512), where the kernels take
// ~15 us and a Python autograd formula (torch.library.register_autograd) would add ~40 us of
// interpreter work to every forward + backward. Registering the formula here keeps the whole
// forward + backward in C++, as torchvision does for its ops. The backward calls
// gis::clip_shift_normalize_backward through the dispatcher, so CPU and CUDA tensors both
// reach their own kernels; second derivatives are not implemented (the backward op has no
// autograd). The fake (meta) kernels stay in gis/ops/_registration.py.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace gis {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor csn_forward_op(const at::Tensor& z, const at::Tensor& k, double eps, int64_t mode) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("gis::clip_shift_normalize", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t)>();
  return op.call(z, k, eps, mode);
}

std::tuple<at::Tensor, at::Tensor> csn_backward_op(const at::Tensor& grad, const at::Tensor& z,
                                                   const at::Tensor& k, double eps,
                                                   int64_t mode) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("gis::clip_shift_normalize_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&, double, int64_t)>();
  return op.call(grad, z, k, eps, mode);
}

class ClipShiftNormalize : public torch::autograd::Function<ClipShiftNormalize> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& z, const at::Tensor& k,
                            double eps, int64_t mode) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out = csn_forward_op(z, k, eps, mode);
    ctx->save_for_backward({z, k});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["mode"] = mode;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const double eps = ctx->saved_data["eps"].toDouble();
    const int64_t mode = ctx->saved_data["mode"].toInt();
    at::Tensor grad = grads[0];
    if (!grad.defined()) grad = at::zeros_like(saved[1]);
    auto [grad_z, grad_k] = csn_backward_op(grad, saved[0], saved[1], eps, mode);
    return {ctx->needs_input_grad(0) ? grad_z : at::Tensor(),
            ctx->needs_input_grad(1) ? grad_k : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor clip_shift_normalize_autograd(const at::Tensor& z, const at::Tensor& k, double eps,
                                         int64_t mode) {
  return ClipShiftNormalize::apply(z, k, eps, mode);
}

}  // namespace

TORCH_LIBRARY_IMPL(gis, Autograd, m) {
  m.impl("clip_shift_normalize", &clip_shift_normalize_autograd);
}

}  // namespace gis
