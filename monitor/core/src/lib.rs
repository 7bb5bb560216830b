//! Pure monitor logic, host-tested.
#![no_std]
