//! Stock and holds at this touchpoint: the pure reservation core ([`book`]) the store writer
//! keeps in memory, and the dispenser that hands units out on vending machines.

pub mod book;
pub mod dispenser;

pub use book::{Hold, Level, Refused, StockBook, StockRefusal, Units};

impl crate::engine::StockView for StockBook {
    fn available(&self, sku: &str) -> u32 {
        self.level(sku).map_or(0, |l| l.available())
    }
}
