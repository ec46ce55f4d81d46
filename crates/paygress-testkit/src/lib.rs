#![doc = include_str!("../README.md")]

pub mod chaos;
pub mod demo;
pub mod dev;
