//! An arbitrary stored cell, shared by the row targets.

use arbitrary::Arbitrary;
use taskflow::fuzzing::Cell;

#[derive(Arbitrary, Debug)]
pub enum FuzzCell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<FuzzCell> for Cell {
    fn from(cell: FuzzCell) -> Cell {
        match cell {
            FuzzCell::Null => Cell::Null,
            FuzzCell::Int(n) => Cell::Int(n),
            FuzzCell::Real(x) => Cell::Real(x),
            FuzzCell::Text(text) => Cell::Text(text),
            FuzzCell::Bytes(bytes) => Cell::Bytes(bytes),
        }
    }
}
