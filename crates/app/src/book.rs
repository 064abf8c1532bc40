//! Limit order books: place (match, then rest) and cancel.
//!
//! Price-time priority; an incoming order trades at the resting order's price. A buy reserves
//! `limit × quantity` of the quote asset up front; each fill at a better price gives the
//! difference back at once, so a resting buy always holds exactly `price × quantity`.
//!
//! Matching work is unbounded per order but amortized: every fill but the last of an incoming
//! order removes a resting order, and each resting order was placed by an item of its own.

use crate::state::{Order, State};
use basalt_types::{AssetId, MarketId, PublicKey, Side, TxError};

/// The order being placed, with what matching needs to know about its market.
#[derive(Debug, Clone, Copy)]
struct Incoming {
    owner: PublicKey,
    side: Side,
    limit_ticks: u64,
    base: AssetId,
    quote: AssetId,
}

impl State {
    /// Place a limit order for `owner`; returns its id (assigned even if it fills at once).
    pub(crate) fn place_order(
        &mut self,
        owner: PublicKey,
        market_id: MarketId,
        side: Side,
        price_ticks: u64,
        quantity: u64,
    ) -> Result<u64, TxError> {
        let market = self
            .markets
            .get(&market_id)
            .ok_or(TxError::UnknownMarket(market_id))?;
        if price_ticks == 0 || quantity == 0 {
            return Err(TxError::ZeroAmount);
        }
        let incoming = Incoming {
            owner,
            side,
            limit_ticks: price_ticks,
            base: market.base,
            quote: market.quote,
        };
        let locked_asset = market.locked_asset(side);
        let reserved = reserve_amount(side, price_ticks, quantity)?;
        self.debit(owner, locked_asset, reserved)?;
        let id = self.take_order_id()?;
        let mut remaining = quantity;
        while remaining > 0 {
            let Some(maker) = self.best_crossing(market_id, side, price_ticks) else {
                break;
            };
            let fill = remaining.min(maker.quantity);
            self.settle_fill(&incoming, &maker, fill)?;
            remaining = remaining.checked_sub(fill).ok_or(TxError::Overflow)?;
        }
        if remaining > 0 {
            let order = Order {
                id,
                market: market_id,
                owner,
                side,
                price_ticks,
                quantity: remaining,
            };
            self.replace_order(market_id, id, Some(order));
        }
        debug_assert!(self
            .markets
            .get(&market_id)
            .is_some_and(|m| !m.is_crossed()));
        Ok(id)
    }

    /// Cancel `owner`'s resting order `order_id` on `market_id` and refund what it holds.
    pub(crate) fn cancel_order(
        &mut self,
        owner: PublicKey,
        market_id: MarketId,
        order_id: u64,
    ) -> Result<(), TxError> {
        let market = self
            .markets
            .get(&market_id)
            .ok_or(TxError::UnknownMarket(market_id))?;
        let order = *market
            .orders
            .get(&order_id)
            .ok_or(TxError::UnknownOrder(order_id))?;
        if order.owner != owner {
            return Err(TxError::NotOrderOwner);
        }
        let asset = market.locked_asset(order.side);
        let refund = order.locked_amount()?;
        self.replace_order(market_id, order_id, None);
        self.credit(owner, asset, refund)
    }

    /// The best resting order on the other side that an order at `limit_ticks` would trade with.
    fn best_crossing(&self, market_id: MarketId, side: Side, limit_ticks: u64) -> Option<Order> {
        let market = self.markets.get(&market_id)?;
        match side {
            Side::Buy => market
                .best_ask()
                .filter(|ask| ask.price_ticks <= limit_ticks),
            Side::Sell => market
                .best_bid()
                .filter(|bid| bid.price_ticks >= limit_ticks),
        }
        .copied()
    }

    /// Trade `fill` units between the incoming order and `maker` at the maker's price.
    fn settle_fill(
        &mut self,
        incoming: &Incoming,
        maker: &Order,
        fill: u64,
    ) -> Result<(), TxError> {
        let notional = fill
            .checked_mul(maker.price_ticks)
            .ok_or(TxError::Overflow)?;
        match incoming.side {
            Side::Buy => {
                // The buyer reserved `fill × limit`; what the maker's lower price saves goes back.
                let reserved = reserve_amount(Side::Buy, incoming.limit_ticks, fill)?;
                let refund = reserved.checked_sub(notional).ok_or(TxError::Overflow)?;
                self.credit(incoming.owner, incoming.base, fill)?;
                self.credit(maker.owner, incoming.quote, notional)?;
                self.credit(incoming.owner, incoming.quote, refund)?;
            }
            Side::Sell => {
                // The maker's bid held exactly `price × quantity`; `notional` of it is paid out.
                self.credit(incoming.owner, incoming.quote, notional)?;
                self.credit(maker.owner, incoming.base, fill)?;
            }
        }
        let rest = maker.quantity.checked_sub(fill).ok_or(TxError::Overflow)?;
        let next = (rest > 0).then_some(Order {
            quantity: rest,
            ..*maker
        });
        self.replace_order(maker.market, maker.id, next);
        Ok(())
    }
}

/// What an order locks when placed: quote `price × quantity` for a buy, base `quantity` for a
/// sell.
fn reserve_amount(side: Side, price_ticks: u64, quantity: u64) -> Result<u64, TxError> {
    match side {
        Side::Buy => price_ticks.checked_mul(quantity).ok_or(TxError::Overflow),
        Side::Sell => Ok(quantity),
    }
}
