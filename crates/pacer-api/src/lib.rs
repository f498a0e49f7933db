//! pacer-api
