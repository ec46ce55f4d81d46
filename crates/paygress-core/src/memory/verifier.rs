//! [`MemoryVerifier`]: fake tokens over an in-memory ledger.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::lock;
use crate::money::{Amount, MintUrl, Unit};
use crate::ports::{
    IssueId, PaymentError, PaymentVerifier, RedeemAttempt, Redeemed, TokenCheck, TokenInfo,
};
use crate::secret::CashuToken;

#[derive(Debug, Default)]
struct Ledger {
    /// Unspent tokens: text -> (mint, amount).
    unspent: HashMap<String, (MintUrl, Amount)>,
    /// Spent tokens: text -> the attempt that spent it (`None`: spent by someone else).
    spent: HashMap<String, Option<String>>,
    /// What each attempt received.
    received: HashMap<String, Redeemed>,
    issued: u64,
    /// Tokens made under an issue id (`issue_once`).
    issues: HashMap<String, CashuToken>,
    attempts: u64,
    balance: HashMap<(MintUrl, Unit), u64>,
    mint_down: bool,
    lose_next_answer: bool,
    down_after_lost_answer: bool,
    fee_ppk: u64,
}

/// A [`PaymentVerifier`] over an in-memory ledger of fake tokens
/// (`fakecashu:<n>`): double spends fail, balances move, issued tokens are redeemable,
/// and each redeem attempt is recorded so [`PaymentVerifier::resolve`] can tell what it
/// received. For transport and service tests that are not about Cashu itself; the real
/// verifier is tested against a real mint.
#[derive(Debug, Clone)]
pub struct MemoryVerifier {
    ledger: Arc<Mutex<Ledger>>,
    accepted: Vec<MintUrl>,
}

impl MemoryVerifier {
    /// A verifier accepting tokens of `mints`.
    pub fn new(mints: Vec<MintUrl>) -> Self {
        Self {
            ledger: Arc::default(),
            accepted: mints,
        }
    }

    /// Creates a spendable token worth `amount` at `mint` (the buyer's wallet).
    pub fn mint_token(&self, mint: &MintUrl, amount: Amount) -> CashuToken {
        let mut l = lock(&self.ledger);
        l.issued += 1;
        let text = format!("fakecashu:{}", l.issued);
        l.unspent.insert(text.clone(), (mint.clone(), amount));
        CashuToken::new(text)
    }

    /// What the service's wallet holds at `mint` in `unit`.
    pub fn balance(&self, mint: &MintUrl, unit: Unit) -> u64 {
        lock(&self.ledger)
            .balance
            .get(&(mint.clone(), unit))
            .copied()
            .unwrap_or(0)
    }

    /// Whether `token` is still spendable.
    pub fn is_unspent(&self, token: &CashuToken) -> bool {
        lock(&self.ledger).unspent.contains_key(token.expose())
    }

    /// Simulates the mint going down (redeem and issue fail) or coming back.
    pub fn set_mint_down(&self, down: bool) {
        lock(&self.ledger).mint_down = down;
    }

    /// The next redeem is applied by the "mint" but its answer is lost
    /// ([`PaymentError::Ambiguous`]), as after a timeout or a dropped connection.
    pub fn lose_next_answer(&self) {
        lock(&self.ledger).lose_next_answer = true;
    }

    /// Like [`MemoryVerifier::lose_next_answer`], and the mint is unreachable right
    /// after (until [`MemoryVerifier::set_mint_down`]`(false)`).
    pub fn lose_next_answer_and_go_down(&self) {
        let mut l = lock(&self.ledger);
        l.lose_next_answer = true;
        l.down_after_lost_answer = true;
    }

    /// Charges an input fee of `ppk` parts per thousand per token (NUT-02 style, rounded
    /// up), taken by the "mint" on redeem.
    pub fn set_fee_ppk(&self, ppk: u64) {
        lock(&self.ledger).fee_ppk = ppk;
    }

    /// Spends `token` as a buyer would (e.g. to check a change token), returning its value.
    pub fn spend(&self, token: &CashuToken) -> Option<Amount> {
        let mut l = lock(&self.ledger);
        let (_, amount) = l.unspent.remove(token.expose())?;
        l.spent.insert(token.expose().to_owned(), None);
        Some(amount)
    }

    fn fee(l: &Ledger, amount: Amount) -> Amount {
        let _ = amount;
        Amount::new(l.fee_ppk.div_ceil(1000), amount.unit)
    }
}

#[async_trait]
impl PaymentVerifier for MemoryVerifier {
    fn inspect(&self, token: &CashuToken) -> Result<TokenInfo, PaymentError> {
        let l = lock(&self.ledger);
        let text = token.expose();
        if !text.starts_with("fakecashu:") {
            return Err(PaymentError::InvalidToken("not a token".into()));
        }
        let (mint, amount) = match l.unspent.get(text) {
            Some(v) => v.clone(),
            None if l.spent.contains_key(text) => return Err(PaymentError::AlreadySpent),
            None => return Err(PaymentError::InvalidToken("unknown token".into())),
        };
        if !self.accepted.contains(&mint) {
            return Err(PaymentError::MintNotAccepted(mint));
        }
        if amount.is_zero() {
            return Err(PaymentError::InvalidToken("token is worth nothing".into()));
        }
        let fee = Self::fee(&l, amount);
        Ok(TokenInfo { mint, amount, fee })
    }

    async fn prepare(&self, token: &CashuToken) -> Result<RedeemAttempt, PaymentError> {
        let info = self.inspect(token)?;
        let mut l = lock(&self.ledger);
        l.attempts += 1;
        Ok(RedeemAttempt {
            mint: info.mint,
            face: info.amount,
            fee: info.fee,
            receipt: format!("attempt:{}", l.attempts),
        })
    }

    async fn redeem(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Redeemed, PaymentError> {
        let mut l = lock(&self.ledger);
        if l.mint_down {
            return Err(PaymentError::MintUnavailable("mint is down".into()));
        }
        let Some((mint, amount)) = l.unspent.remove(token.expose()) else {
            return Err(PaymentError::AlreadySpent);
        };
        let fee = Self::fee(&l, amount);
        let received = Redeemed {
            mint: mint.clone(),
            amount: Amount::new(amount.value.saturating_sub(fee.value), amount.unit),
        };
        l.spent
            .insert(token.expose().to_owned(), Some(attempt.receipt.clone()));
        l.received.insert(attempt.receipt.clone(), received.clone());
        *l.balance.entry((mint, amount.unit)).or_default() += received.amount.value;
        if std::mem::take(&mut l.lose_next_answer) {
            l.mint_down = std::mem::take(&mut l.down_after_lost_answer);
            return Err(PaymentError::Ambiguous("the mint's answer was lost".into()));
        }
        Ok(received)
    }

    async fn resolve(
        &self,
        token: &CashuToken,
        attempt: &RedeemAttempt,
    ) -> Result<Option<Redeemed>, PaymentError> {
        {
            let l = lock(&self.ledger);
            if l.mint_down {
                return Err(PaymentError::MintUnavailable("mint is down".into()));
            }
            if let Some(r) = l.received.get(&attempt.receipt) {
                return Ok(Some(r.clone()));
            }
            if !l.unspent.contains_key(token.expose()) {
                // Spent by someone else, or never a token: nothing was received.
                return Ok(None);
            }
        }
        // Never applied: complete it now, as a replay of the swap would.
        match self.redeem(token, attempt).await {
            Ok(r) => Ok(Some(r)),
            Err(PaymentError::AlreadySpent) => Ok(None),
            Err(PaymentError::Ambiguous(_)) => {
                let l = lock(&self.ledger);
                Ok(l.received.get(&attempt.receipt).cloned())
            }
            Err(e) => Err(e),
        }
    }

    async fn check(&self, token: &CashuToken) -> Result<TokenCheck, PaymentError> {
        match self.inspect(token) {
            Ok(info) => Ok(TokenCheck {
                mint: info.mint,
                amount: info.amount,
                spendable: true,
            }),
            Err(PaymentError::AlreadySpent) => Err(PaymentError::AlreadySpent),
            Err(e) => Err(e),
        }
    }

    async fn issue(&self, mint: &MintUrl, amount: Amount) -> Result<CashuToken, PaymentError> {
        {
            let mut l = lock(&self.ledger);
            if l.mint_down {
                return Err(PaymentError::Issue("mint is down".into()));
            }
            let bal = l.balance.entry((mint.clone(), amount.unit)).or_default();
            if *bal < amount.value {
                return Err(PaymentError::Issue(
                    format!("balance {bal} {} < {}", amount.unit, amount.value).into(),
                ));
            }
            *bal -= amount.value;
        }
        Ok(self.mint_token(mint, amount))
    }

    async fn issue_once(
        &self,
        id: &IssueId,
        mint: &MintUrl,
        amount: Amount,
    ) -> Result<CashuToken, PaymentError> {
        if let Some(token) = lock(&self.ledger).issues.get(id.as_str()) {
            return Ok(token.clone());
        }
        let token = self.issue(mint, amount).await?;
        lock(&self.ledger)
            .issues
            .insert(id.as_str().to_owned(), token.clone());
        Ok(token)
    }

    fn accepted_mints(&self) -> Vec<MintUrl> {
        self.accepted.clone()
    }
}
