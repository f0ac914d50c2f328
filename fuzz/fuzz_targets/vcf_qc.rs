//! The upload QC on arbitrary VCF text, BGZF-compressed as an upload would be: it must refuse
//! bad input with an error, never panic, and hold no more than its line limits.
#![no_main]

use std::io::Write;

use fedimpute_node::imputation::GenomeBuild;
use fedimpute_node::imputation::qc::{InputFile, QcSettings, check_inputs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("fedimpute-fuzz-qc-{}.vcf.gz", std::process::id()));
    {
        let file = std::fs::File::create(&path).expect("temporary file");
        let mut writer = noodles::bgzf::io::Writer::new(file);
        writer.write_all(data).expect("bgzf write");
        writer.finish().expect("bgzf finish");
    }
    let settings = QcSettings { min_samples: 1, ..QcSettings::default() };
    let input = InputFile { path: path.clone(), name: "fuzz.vcf.gz".into() };
    for build in [GenomeBuild::Hg19, GenomeBuild::Hg38] {
        let _ = check_inputs(std::slice::from_ref(&input), build, &settings);
    }
});
