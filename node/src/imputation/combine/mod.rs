//! Combining the imputed results of several panels into one, at the origin of a multi-panel
//! job: statistics over the children's files, not job orchestration (`jobs/multi_panel.rs`
//! decides what runs where).
//!
//! - [`best_r2`]: per variant, the call of the panel with the highest estimated r2;
//! - [`meta`]: meta-imputation, per target haplotype and along the chromosome a weight for each
//!   panel learnt from how well it predicted the haplotype's typed alleles when they were hidden.

pub mod best_r2;
pub mod meta;
