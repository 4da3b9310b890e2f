// Device half of the kernel probe: a trivial kernel, and its launcher.
#include "probe.h"

namespace {

constexpr int kThreads = 32;
constexpr int kMagic = 0x5090;

__global__ void probe_kernel(int *out) {
    out[threadIdx.x] = kMagic + static_cast<int>(threadIdx.x);
}

}  // namespace

cudaError_t probe_launch(int *ran, int *sass_arch) {
    *ran = 0;
    *sass_arch = 0;
    int *device_out = nullptr;
    int host_out[kThreads] = {};
    cudaError_t err = cudaMalloc(&device_out, sizeof(host_out));
    if (err != cudaSuccess) return err;

    probe_kernel<<<1, kThreads>>>(device_out);
    err = cudaGetLastError();  // "no kernel image" surfaces here, at the launch
    if (err == cudaSuccess) err = cudaDeviceSynchronize();
    if (err == cudaSuccess)
        err = cudaMemcpy(host_out, device_out, sizeof(host_out), cudaMemcpyDeviceToHost);
    cudaFree(device_out);
    if (err != cudaSuccess) return err;

    for (int i = 0; i < kThreads; ++i) {
        if (host_out[i] != kMagic + i) return cudaErrorUnknown;  // ran, but wrote garbage
    }
    *ran = 1;
    cudaFuncAttributes attrs;
    if (cudaFuncGetAttributes(&attrs, probe_kernel) == cudaSuccess) *sass_arch = attrs.binaryVersion;
    return cudaSuccess;
}
