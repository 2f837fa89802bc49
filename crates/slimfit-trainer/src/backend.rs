//! The compute backend, chosen at compile time by cargo feature — no runtime dispatch.
//!
//! | feature | backend |
//! |---|---|
//! | `flex` (default) | burn's pure-Rust CPU backend |
//! | `cuda` | NVIDIA GPUs through CubeCL (driver loaded at run time) |
//! | `tch` | LibTorch (build with `LIBTORCH_USE_PYTORCH=1` against a pip-installed torch) |

use burn::backend::Autodiff;

#[cfg(any(
    all(feature = "flex", feature = "cuda"),
    all(feature = "flex", feature = "tch"),
    all(feature = "cuda", feature = "tch")
))]
compile_error!(
    "enable exactly one backend feature: `flex` (default), or `--no-default-features \
     --features cuda`, or `--no-default-features --features tch`"
);

#[cfg(not(any(feature = "flex", feature = "cuda", feature = "tch")))]
compile_error!("enable one backend feature: `flex`, `cuda` or `tch`");

/// The inference backend of this build.
#[cfg(feature = "flex")]
pub type InferenceBackend = burn::backend::Flex;
/// The inference backend of this build.
#[cfg(feature = "cuda")]
pub type InferenceBackend = burn::backend::Cuda;
/// The inference backend of this build.
#[cfg(feature = "tch")]
pub type InferenceBackend = burn::backend::LibTorch;

/// The training backend of this build: [`InferenceBackend`] with reverse-mode autodiff.
pub type TrainingBackend = Autodiff<InferenceBackend>;

/// The device type of this build.
pub type Device = burn::tensor::Device<InferenceBackend>;

/// Name of the compiled-in backend, for reports.
pub const BACKEND_NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "tch") {
    "tch"
} else {
    "flex"
};

/// Why the device of this build cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No usable CUDA driver or GPU.
    #[error(
        "this binary was built for CUDA, but {0}. Rebuild with the default CPU backend \
         (`cargo run --release -p slimfit-trainer`), or run on a machine with an NVIDIA driver"
    )]
    Cuda(String),
}

/// The default device of this build, after checking that it can really be used: a CUDA build
/// on a machine without a driver fails here with a clear error, instead of panicking later
/// in a device thread.
pub fn default_device() -> Result<Device, DeviceError> {
    #[cfg(feature = "cuda")]
    cuda_probe::check().map_err(DeviceError::Cuda)?;
    Ok(Device::default())
}

#[cfg(feature = "cuda")]
mod cuda_probe {
    //! Loads the CUDA driver library ourselves and asks it for a device, the same calls the
    //! CubeCL runtime would make, but with errors we can report.
    use libloading::{Library, Symbol};

    type CuInit = unsafe extern "C" fn(flags: u32) -> i32;
    type CuDeviceGetCount = unsafe extern "C" fn(count: *mut i32) -> i32;

    pub fn check() -> Result<(), String> {
        // SAFETY: loading the system CUDA driver runs its initialisers, which is exactly what
        // the CUDA runtime does on first use; the two symbols have the documented signatures.
        unsafe {
            let lib = Library::new("libcuda.so.1")
                .or_else(|_| Library::new("libcuda.so"))
                .map_err(|e| {
                    format!("the CUDA driver library (libcuda.so.1) is not loadable: {e}")
                })?;
            let init: Symbol<CuInit> = lib
                .get(b"cuInit\0")
                .map_err(|e| format!("libcuda lacks cuInit: {e}"))?;
            let code = init(0);
            if code != 0 {
                return Err(format!(
                    "cuInit failed with CUDA error {code} (no GPU visible?)"
                ));
            }
            let count_fn: Symbol<CuDeviceGetCount> = lib
                .get(b"cuDeviceGetCount\0")
                .map_err(|e| format!("libcuda lacks cuDeviceGetCount: {e}"))?;
            let mut count = 0;
            let code = count_fn(&mut count);
            if code != 0 || count == 0 {
                return Err(format!(
                    "no CUDA device is visible (error {code}, {count} devices)"
                ));
            }
        }
        Ok(())
    }
}
