// AVX2 block kernels of ath_cpu_activation_fwd/bwd (GELU tanh, SiLU, SwiGLU on F32 blocks); templates in
// rowops_impl.h, built with the AVX2 flags, called from activation.cpp when
// ath::cpu::active_isa() allows it.
#include "rowops_impl.h"

ATH_DEFINE_ACT_BLOCKS(avx2, VAvx2)
