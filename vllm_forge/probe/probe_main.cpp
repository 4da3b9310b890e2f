// kernel-probe: for each visible GPU, launch a trivial kernel and say whether this binary holds a
// kernel image the GPU can run. The RTX 5090 failure ("no kernel image is available for execution
// on the device") is caught here in a second instead of after a model load.
//
// Exit codes (each outcome its own, so a script can tell them apart):
//   0  every visible GPU ran the kernel
//   1  bad command line
//   2  at least one GPU has no kernel image in this binary
//   3  no GPU, or no usable driver (none, too old for this runtime, or mismatched)
//   4  any other CUDA error
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "probe.h"

#ifndef PROBE_BUILT_FOR
#error "PROBE_BUILT_FOR must name the compiled arches, e.g. -DPROBE_BUILT_FOR='\"sm_120\"'"
#endif

namespace {

enum ExitCode { kOk = 0, kUsage = 1, kNoKernelImage = 2, kNoGpu = 3, kCudaError = 4 };

struct GpuResult {
    int index = 0;
    std::string name;
    int major = 0;
    int minor = 0;
    int kernel_image = -1;  // 1 ran, 0 no image for this GPU, -1 unknown (another error came first)
    int sass_arch = 0;      // the SASS version the driver loaded for the kernel, when it ran
    std::string error;      // cudaGetErrorName of what failed, or empty
    std::string message;    // one line a person can read
};

struct Report {
    std::string outcome = "ok";
    int exit_code = kOk;
    std::string message;
    int runtime_version = CUDART_VERSION;
    int driver_version = 0;
    std::vector<GpuResult> gpus;
};

std::string version_text(int v) {
    if (v <= 0) return "none";
    return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string sm_name(int major, int minor) {
    return "sm_" + std::to_string(major) + std::to_string(minor);
}

std::string built_for() { return PROBE_BUILT_FOR; }

std::vector<std::string> built_for_list() {
    std::vector<std::string> out;
    std::string word;
    for (char c : built_for() + " ") {
        if (c == ' ' || c == ',' || c == ';') {
            if (!word.empty()) out.push_back(word);
            word.clear();
        } else {
            word += c;
        }
    }
    return out;
}

std::string built_for_text() {
    std::string text;
    for (const std::string &arch : built_for_list()) {
        if (!text.empty()) text += ", ";
        text += arch;
        if (arch.rfind("compute_", 0) == 0) text += " (PTX)";
    }
    return text.empty() ? "no arch at all" : text;
}

std::string err_text(cudaError_t err) {
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
}

// The outcome for everything that stops the probe before any GPU is tried.
bool check_driver_and_count(Report &report, int &count) {
    cudaDriverGetVersion(&report.driver_version);  // 0 when libcuda.so.1 cannot be loaded
    cudaError_t err = cudaGetDeviceCount(&count);
    const std::string runtime = version_text(report.runtime_version);
    if (err == cudaErrorInsufficientDriver || (err != cudaSuccess && report.driver_version == 0)) {
        if (report.driver_version == 0) {
            report.outcome = "no_driver";
            report.message =
                "no driver: libcuda.so.1 (the NVIDIA driver) could not be loaded; in a "
                "container, start it with the GPU passed through (--gpus all, or CDI) [" +
                err_text(err) + "]";
        } else {
            report.outcome = "driver_too_old";
            report.message = "the NVIDIA driver supports CUDA " +
                             version_text(report.driver_version) +
                             ", older than the CUDA runtime " + runtime +
                             " this probe was built with; update the driver [" + err_text(err) + "]";
        }
        report.exit_code = kNoGpu;
        return false;
    }
    if (err == cudaErrorSystemDriverMismatch || err == cudaErrorCompatNotSupportedOnDevice) {
        report.outcome = "driver_mismatch";
        report.message = "the NVIDIA driver is unusable here: " + err_text(err);
        report.exit_code = kNoGpu;
        return false;
    }
    if (err == cudaErrorNoDevice || (err == cudaSuccess && count == 0)) {
        const char *visible = std::getenv("CUDA_VISIBLE_DEVICES");
        report.outcome = "no_gpu";
        report.message = "no GPU: the driver (CUDA " + version_text(report.driver_version) +
                         ") sees no CUDA-capable device";
        if (visible != nullptr)
            report.message += std::string(" (CUDA_VISIBLE_DEVICES=\"") + visible + "\")";
        report.exit_code = kNoGpu;
        count = 0;
        return false;
    }
    if (err != cudaSuccess) {
        report.outcome = "cuda_error";
        report.message = "cudaGetDeviceCount failed: " + err_text(err);
        report.exit_code = kCudaError;
        return false;
    }
    return true;
}

GpuResult probe_gpu(int index) {
    GpuResult gpu;
    gpu.index = index;
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, index);
    if (err == cudaSuccess) {
        gpu.name = prop.name;
        gpu.major = prop.major;
        gpu.minor = prop.minor;
        err = cudaSetDevice(index);
    }
    int ran = 0;
    if (err == cudaSuccess) err = probe_launch(&ran, &gpu.sass_arch);

    const std::string who = "GPU " + std::to_string(index) + " " +
                            (gpu.name.empty() ? std::string("?") : gpu.name) + " (" +
                            sm_name(gpu.major, gpu.minor) + ")";
    if (err == cudaSuccess && ran) {
        gpu.kernel_image = 1;
        gpu.message = who + ": kernel ran";
        if (gpu.sass_arch > 0)
            gpu.message += " (" + sm_name(gpu.sass_arch / 10, gpu.sass_arch % 10) + " code loaded)";
    } else if (err == cudaErrorNoKernelImageForDevice) {
        gpu.kernel_image = 0;
        gpu.error = cudaGetErrorName(err);
        gpu.message = who + ": no kernel image; this binary carries " + built_for_text() +
                      " and nothing this GPU can run";
    } else {
        gpu.error = cudaGetErrorName(err);
        gpu.message = who + ": CUDA error " + err_text(err);
        if (err == cudaErrorUnsupportedPtxVersion || err == cudaErrorInvalidPtx)
            gpu.message += "; the driver cannot compile this binary's PTX (" + built_for_text() +
                           "): update the driver or build SASS for this GPU";
    }
    cudaDeviceReset();  // leave no sticky error behind for the next GPU
    return gpu;
}

std::string json_string(const std::string &s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    return out + "\"";
}

void print_json(const Report &r) {
    std::printf("{\"outcome\": %s, \"exit_code\": %d, \"message\": %s, ",
                json_string(r.outcome).c_str(), r.exit_code, json_string(r.message).c_str());
    std::printf("\"built_for\": [");
    const std::vector<std::string> arches = built_for_list();
    for (size_t i = 0; i < arches.size(); ++i)
        std::printf("%s%s", i ? ", " : "", json_string(arches[i]).c_str());
    std::printf("], \"cuda_runtime\": %s, \"driver_cuda\": %s, \"gpus\": [",
                json_string(version_text(r.runtime_version)).c_str(),
                r.driver_version > 0 ? json_string(version_text(r.driver_version)).c_str()
                                     : "null");
    for (size_t i = 0; i < r.gpus.size(); ++i) {
        const GpuResult &g = r.gpus[i];
        std::printf("%s{\"index\": %d, \"name\": %s, \"capability\": \"%d.%d\", \"sm\": %s, ",
                    i ? ", " : "", g.index, json_string(g.name).c_str(), g.major, g.minor,
                    json_string(sm_name(g.major, g.minor)).c_str());
        std::printf("\"kernel_image\": %s, \"loaded_sass\": %s, \"error\": %s, \"message\": %s}",
                    g.kernel_image < 0 ? "null" : (g.kernel_image ? "true" : "false"),
                    g.sass_arch > 0
                        ? json_string(sm_name(g.sass_arch / 10, g.sass_arch % 10)).c_str()
                        : "null",
                    g.error.empty() ? "null" : json_string(g.error).c_str(),
                    json_string(g.message).c_str());
    }
    std::printf("]}\n");
}

void print_text(const Report &r) {
    const std::string driver = r.driver_version > 0
                                   ? "driver supports CUDA " + version_text(r.driver_version)
                                   : std::string("no driver loaded");
    std::printf("kernel-probe: built for %s with CUDA runtime %s; %s\n",
                built_for_text().c_str(), version_text(r.runtime_version).c_str(),
                driver.c_str());
    for (const GpuResult &g : r.gpus) std::printf("%s\n", g.message.c_str());
    if (!r.message.empty()) std::printf("%s\n", r.message.c_str());
    std::printf("outcome: %s (exit %d)\n", r.outcome.c_str(), r.exit_code);
}

const char kUsageText[] =
    "usage: kernel-probe [--json]\n"
    "Launch a trivial kernel on every visible GPU and report whether this binary has a kernel\n"
    "image for it. Exit 0: all ran; 2: a GPU has no kernel image; 3: no GPU or no usable\n"
    "driver; 4: another CUDA error; 1: bad arguments.\n";

}  // namespace

int main(int argc, char **argv) {
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
            std::fputs(kUsageText, stdout);
            return kOk;
        } else {
            std::fprintf(stderr, "kernel-probe: unknown argument %s\n%s", argv[i], kUsageText);
            return kUsage;
        }
    }

    Report report;
    int count = 0;
    if (check_driver_and_count(report, count)) {
        int no_image = 0;
        int failed = 0;
        for (int i = 0; i < count; ++i) {
            report.gpus.push_back(probe_gpu(i));
            const GpuResult &g = report.gpus.back();
            if (g.kernel_image == 0) ++no_image;
            else if (g.kernel_image < 0) ++failed;
        }
        // "No kernel image" wins over other errors: it is the one a rebuild fixes.
        if (no_image > 0) {
            report.outcome = "no_kernel_image";
            report.exit_code = kNoKernelImage;
            report.message = std::to_string(no_image) + " of " + std::to_string(count) +
                             " GPU(s) have no kernel image in this binary: rebuild with their "
                             "arch in the arch list (TORCH_CUDA_ARCH_LIST)";
        } else if (failed > 0) {
            report.outcome = "cuda_error";
            report.exit_code = kCudaError;
            report.message = std::to_string(failed) + " of " + std::to_string(count) +
                             " GPU(s) failed with a CUDA error";
        }
    }
    if (json) print_json(report);
    else print_text(report);
    return report.exit_code;
}
