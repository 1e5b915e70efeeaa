// AVX512 row kernels of ath_cpu_cross_entropy_fwd/bwd (log-sum-exp of a row, softmax gradient of a row);
// templates in rowops_impl.h, built with the AVX512 flags, called from cross_entropy.cpp when
// ath::cpu::active_isa() allows it.
#include "rowops_impl.h"

ATH_DEFINE_XENT_ROWS(avx512, VAvx512)
