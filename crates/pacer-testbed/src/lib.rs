//! pacer-testbed
