// The kernel probe's two halves: device code (probe_kernel.cu, built with the caller's -gencode
// flags) and host code (probe_main.cpp, plain C++: it carries no device code of its own, so the
// binary holds SASS only for the arches GENCODE names).
#pragma once

#include <cuda_runtime_api.h>

// Launches a one-block kernel on the current device and checks that it ran.
// On success *ran is 1. *sass_arch is the SASS version the driver loaded (e.g. 90), or 0.
cudaError_t probe_launch(int *ran, int *sass_arch);
