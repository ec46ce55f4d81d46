//! Splitting one token into top-up-sized tokens at its mint, each saved under `tokens/`
//! before it is used, so that a buyer who is not online can be paid for piece by piece.

use std::path::PathBuf;
use std::str::FromStr;

use paygress_cashu::cdk::Amount;
use paygress_cashu::cdk::nuts::{CurrencyUnit, Token};
use paygress_cashu::cdk::wallet::{ReceiveOptions, SendOptions, Wallet};
use paygress_cashu::ephemeral_wallet;
use paygress_core::CashuToken;

use crate::{BuyerError, BuyerHome, TokenKind};

/// One prepaid top-up: a token of the piece's value, saved under `tokens/`.
#[derive(Debug, Clone)]
pub struct Piece {
    /// The token.
    pub token: CashuToken,
    /// Its file (deleted once the service took it).
    pub file: PathBuf,
    /// Its face value in sat (the piece's price, plus the mint's fee to redeem it).
    pub value: u64,
}

/// The outcome of [`prepay`].
#[derive(Debug, Clone)]
pub struct Prepaid {
    /// The pieces, each worth one top-up.
    pub pieces: Vec<Piece>,
    /// What the mint took for the swaps (counted against the budget).
    pub fees: u64,
    /// What the token held beyond the pieces, saved as a change token.
    pub change: Option<PathBuf>,
}

impl Prepaid {
    /// The budget the pieces use: their face values and the swaps' fees.
    pub fn cost(&self) -> u64 {
        self.pieces
            .iter()
            .map(|p| p.value)
            .sum::<u64>()
            .saturating_add(self.fees)
    }
}

fn mint_err(action: &'static str) -> impl FnOnce(paygress_cashu::cdk::Error) -> BuyerError {
    move |e| BuyerError::Mint {
        action,
        reason: e.to_string(),
    }
}

/// Swaps `token` at its mint into tokens each worth `piece_sat` (plus the fee the mint
/// charges to redeem it), as many as fit in `budget_sat` with the swaps' fees; each is
/// saved under `tokens/` (kind [`TokenKind::TopUp`]) as soon as it exists, and the rest of
/// `token` comes back as a saved change token. A token in a unit other than sat is
/// refused untouched. If the mint fails after taking `token`, what is left is saved as
/// change before the error is returned.
pub async fn prepay(
    home: &BuyerHome,
    token: &CashuToken,
    piece_sat: u64,
    budget_sat: u64,
) -> Result<Prepaid, BuyerError> {
    if piece_sat == 0 {
        return Err(BuyerError::InvalidArgument(
            "a top-up must cost something".to_owned(),
        ));
    }
    let decoded = Token::from_str(token.expose().trim())
        .map_err(|_| BuyerError::InvalidArgument("cannot decode the token".to_owned()))?;
    let unit = decoded.unit().unwrap_or(CurrencyUnit::Sat);
    if unit != CurrencyUnit::Sat {
        return Err(BuyerError::InvalidArgument(format!(
            "automatic top-ups pay in sat; the token is in {unit}"
        )));
    }
    let mint_url = decoded
        .mint_url()
        .map_err(|_| BuyerError::InvalidArgument("the token names no single mint".to_owned()))?;
    let wallet = ephemeral_wallet(mint_url, unit)
        .await
        .map_err(|e| BuyerError::Mint {
            action: "opening a wallet",
            reason: e.to_string(),
        })?;
    wallet
        .receive(token.expose().trim(), ReceiveOptions::default())
        .await
        .map_err(mint_err("receiving the token"))?;
    // From here the money is in this wallet: every exit saves what is left.
    let mut prepaid = Prepaid {
        pieces: Vec::new(),
        fees: 0,
        change: None,
    };
    let split = split(home, &wallet, piece_sat, budget_sat, &mut prepaid).await;
    prepaid.change = save_rest(home, &wallet).await?;
    split.map(|()| prepaid)
}

async fn split(
    home: &BuyerHome,
    wallet: &Wallet,
    piece_sat: u64,
    budget_sat: u64,
    prepaid: &mut Prepaid,
) -> Result<(), BuyerError> {
    loop {
        let options = SendOptions {
            include_fee: true,
            ..Default::default()
        };
        let prepared = match wallet.prepare_send(Amount::from(piece_sat), options).await {
            Ok(p) => p,
            Err(paygress_cashu::cdk::Error::InsufficientFunds) => return Ok(()),
            Err(e) => return Err(mint_err("splitting the token")(e)),
        };
        let cost = piece_sat
            .saturating_add(prepared.fee().to_u64())
            .saturating_add(prepaid.cost());
        if cost > budget_sat {
            let _ = prepared.cancel().await;
            return Ok(());
        }
        let swap_fee = prepared.swap_fee().to_u64();
        let made = prepared
            .confirm(None)
            .await
            .map_err(mint_err("splitting the token"))?;
        let value = made.value().map(|v| v.to_u64()).unwrap_or(piece_sat);
        let token = CashuToken::new(made.to_string());
        let file = home.save_token(TokenKind::TopUp, &token)?;
        prepaid.fees = prepaid.fees.saturating_add(swap_fee);
        prepaid.pieces.push(Piece { token, file, value });
    }
}

/// Sends the wallet's whole balance as one token (less the swap's fee) and saves it as
/// change; `None` when nothing is left.
async fn save_rest(home: &BuyerHome, wallet: &Wallet) -> Result<Option<PathBuf>, BuyerError> {
    let mut amount = wallet
        .total_balance()
        .await
        .map_err(mint_err("reading the balance"))?;
    // A swap's fee is a few sat per proof: a bounded number of tries.
    for _ in 0..256 {
        if amount == Amount::ZERO {
            return Ok(None);
        }
        match wallet.prepare_send(amount, SendOptions::default()).await {
            Ok(p) => {
                let t = p.confirm(None).await.map_err(mint_err("saving the rest"))?;
                let path = home.save_token(TokenKind::Change, &CashuToken::new(t.to_string()))?;
                return Ok(Some(path));
            }
            Err(paygress_cashu::cdk::Error::InsufficientFunds) => amount -= Amount::ONE,
            Err(e) => return Err(mint_err("saving the rest")(e)),
        }
    }
    Ok(None)
}
