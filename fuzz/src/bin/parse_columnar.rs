//! AFL target: `trainlens_fuzz::check_columnar` (see src/lib.rs for what it checks).

fn main() {
    afl::fuzz!(|data: &[u8]| {
        trainlens_fuzz::check_columnar(data);
    });
}
