//! pacer-model
