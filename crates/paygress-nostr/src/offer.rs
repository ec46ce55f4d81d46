//! The offer as standard Nostr events, and reading it back.
//!
//! A service announces itself twice, both events addressable by the service key and one
//! stable `d` tag, both carrying a NIP-40 `expiration`:
//!
//! - a **NIP-89 handler information** event (kind 31990): content = the full
//!   machine-readable [`NostrOffer`] JSON (whose `name` doubles as the kind-0 style
//!   `name` NIP-89 clients show), one `k` tag per request kind served (1000, 1002, 1003),
//!   so `{"kinds":[31990],"#k":["1000"]}` finds every Paygress service;
//! - a **NIP-99 classified listing** (kind 30402): `title`, `summary`, `published_at`,
//!   one `price` tag per tier (`["price", "<sat>", "SAT", "hour", "<tier>"]`), `t` tags
//!   (`paygress`, `compute`, `ssh`, `cashu`, the backend) and `location` when configured;
//!   content = Markdown for people, with the same offer JSON in a fenced `json` block.
//!
//! The old kind 38383 (which NIP-69 assigns to peer-to-peer trade orders) is still read,
//! and published only when [`crate::NostrConfig::legacy_offer`] is set.

use std::collections::HashMap;
use std::fmt::Write as _;

use nostr_sdk::{
    Alphabet, Event, EventBuilder, Filter, Kind, PublicKey, RelayUrl, SingleLetterTag, Tag,
    TagKind, Timestamp,
};
use serde::Serialize;

use crate::error::NostrError;
use crate::wire::{KIND_RELEASE, KIND_SPAWN, KIND_STATUS, KIND_TOP_UP, NostrOffer};

/// NIP-89 handler information.
pub const KIND_HANDLER_INFO: u16 = 31990;
/// NIP-99 classified listing.
pub const KIND_CLASSIFIED: u16 = 30402;
/// The seed's offer kind. NIP-69 assigns 38383 to P2P trade orders: read for old
/// services, published only on request.
pub const KIND_OFFER_LEGACY: u16 = 38383;
/// Hashtag on every offer event.
pub const OFFER_HASHTAG: &str = "paygress";
/// Currency code of `price` tags.
pub const PRICE_CURRENCY: &str = "SAT";

/// What an offer event says beyond the offer itself.
#[derive(Debug, Clone, Default)]
pub struct OfferMeta {
    /// The `d` tag shared by all offer events of the service.
    pub identifier: String,
    /// NIP-40 expiration of the events.
    pub expires_at: Option<Timestamp>,
    /// NIP-99 `location` (free text), when the operator configured one.
    pub location: Option<String>,
    /// Also build the legacy kind 38383 event.
    pub legacy: bool,
}

/// The events announcing `offer`: kind 31990, kind 30402 and (when `meta.legacy`) 38383.
pub fn offer_events(offer: &NostrOffer, meta: &OfferMeta) -> Result<Vec<EventBuilder>, NostrError> {
    let json = serde_json::to_string(offer).map_err(|e| NostrError::Malformed(e.to_string()))?;
    let common = |mut tags: Vec<Tag>| {
        tags.insert(0, Tag::identifier(meta.identifier.clone()));
        tags.push(Tag::hashtag(OFFER_HASHTAG));
        if let Some(at) = meta.expires_at {
            tags.push(Tag::expiration(at));
        }
        tags
    };
    let o = &offer.offer;
    let alt = Tag::custom(
        TagKind::Alt,
        [format!(
            "Paygress compute offer \"{}\": SSH access paid with Cashu ecash",
            o.name
        )],
    );
    let mut handler_tags: Vec<Tag> = [KIND_SPAWN, KIND_TOP_UP, KIND_STATUS, KIND_RELEASE]
        .iter()
        .map(|k| Tag::custom(TagKind::k(), [k.to_string()]))
        .collect();
    handler_tags.push(alt.clone());
    let handler =
        EventBuilder::new(Kind::Custom(KIND_HANDLER_INFO), json.clone()).tags(common(handler_tags));

    let mut tags = vec![
        Tag::custom(TagKind::Title, [format!("Paygress: {}", o.name)]),
        Tag::custom(TagKind::Summary, [summary(offer)]),
        Tag::custom(
            TagKind::custom("published_at"),
            [Timestamp::now().as_secs().to_string()],
        ),
    ];
    for (tier, msat) in prices(offer) {
        let mut values = vec![
            "price".to_owned(),
            sat_string(msat),
            PRICE_CURRENCY.to_owned(),
            "hour".to_owned(),
        ];
        values.extend(tier);
        tags.push(Tag::parse(values).map_err(|e| NostrError::Event(e.to_string()))?);
    }
    for t in ["compute", "ssh", "cashu"] {
        tags.push(Tag::hashtag(t));
    }
    if !o.backend.is_empty() {
        tags.push(Tag::hashtag(o.backend.to_lowercase()));
    }
    if let Some(place) = &meta.location {
        tags.push(Tag::custom(TagKind::custom("location"), [place.clone()]));
    }
    tags.push(alt);
    let classified =
        EventBuilder::new(Kind::Custom(KIND_CLASSIFIED), markdown(offer, &json)).tags(common(tags));

    let mut events = vec![handler, classified];
    if meta.legacy {
        events.push(EventBuilder::new(Kind::Custom(KIND_OFFER_LEGACY), json).tags(common(vec![])));
    }
    Ok(events)
}

/// `(tier id, msat per hour)` for every tier; the base rate (no tier id) when there is none.
pub fn prices(offer: &NostrOffer) -> Vec<(Option<String>, u64)> {
    let o = &offer.offer;
    if o.tiers.is_empty() {
        return vec![(None, o.rate_msat_per_hour)];
    }
    o.tiers
        .iter()
        .map(|t| (Some(t.id.clone()), t.rate_msat_per_hour))
        .collect()
}

/// The price per hour in msat of `tier` (`None`: the default, i.e. the first tier or the
/// base rate), or `None` when the offer has no such tier.
pub fn price_msat_per_hour(offer: &NostrOffer, tier: Option<&str>) -> Option<u64> {
    let o = &offer.offer;
    match tier {
        None => Some(
            o.tiers
                .first()
                .map_or(o.rate_msat_per_hour, |t| t.rate_msat_per_hour),
        ),
        Some(id) => o
            .tiers
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.rate_msat_per_hour)
            .or_else(|| (o.tiers.is_empty() && id == "standard").then_some(o.rate_msat_per_hour)),
    }
}

/// `msat` as a decimal number of sat (`"60"`, `"0.5"`).
pub fn sat_string(msat: u64) -> String {
    let (whole, frac) = (msat / 1000, msat % 1000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:03}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

fn summary(offer: &NostrOffer) -> String {
    let o = &offer.offer;
    let cheapest = prices(offer).into_iter().map(|(_, p)| p).min().unwrap_or(0);
    format!(
        "SSH-reachable {} sandbox from {} sat/hour, {}–{} minutes, paid with Cashu ecash over Nostr",
        if o.backend.is_empty() {
            "compute"
        } else {
            &o.backend
        },
        sat_string(cheapest),
        o.min_duration_minutes,
        o.max_duration_minutes,
    )
}

fn markdown(offer: &NostrOffer, json: &str) -> String {
    let o = &offer.offer;
    let mut md = format!("# {}\n\n{}.\n\n", o.name, summary(offer));
    md.push_str("| tier | CPU (millicores) | memory (MiB) | sat/hour |\n|---|---|---|---|\n");
    if o.tiers.is_empty() {
        let _ = writeln!(
            md,
            "| standard | | | {} |",
            sat_string(o.rate_msat_per_hour)
        );
    }
    for t in &o.tiers {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            t.id,
            t.cpu_millicores,
            t.memory_mib,
            sat_string(t.rate_msat_per_hour)
        );
    }
    let mints: Vec<&str> = o.mints.iter().map(|m| m.as_str()).collect();
    let _ = write!(
        md,
        "\nMints: {}. Request with `paygress request --service <npub>`.\n\n```json\n{json}\n```\n",
        mints.join(", ")
    );
    md
}

/// The JSON of the first fenced `json` block in `markdown`.
fn fenced_json(markdown: &str) -> Option<&str> {
    let start = markdown.find("```json\n")? + "```json\n".len();
    let len = markdown[start..].find("\n```")?;
    Some(&markdown[start..start + len])
}

/// Filters finding offers: kind 31990 by `#k` 1000, kind 30402 and 38383 by `#t paygress`.
pub fn offer_filters() -> Vec<Filter> {
    vec![
        Filter::new()
            .kind(Kind::Custom(KIND_HANDLER_INFO))
            .custom_tag(
                SingleLetterTag::lowercase(Alphabet::K),
                KIND_SPAWN.to_string(),
            ),
        Filter::new()
            .kind(Kind::Custom(KIND_CLASSIFIED))
            .hashtag(OFFER_HASHTAG),
        Filter::new()
            .kind(Kind::Custom(KIND_OFFER_LEGACY))
            .hashtag(OFFER_HASHTAG),
    ]
}

/// A service's offer found on relays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoveredOffer {
    /// The service's public key (send requests to it).
    pub service: PublicKey,
    /// The offer's `d` tag.
    pub identifier: String,
    /// When it was (re)published.
    pub published_at: Timestamp,
    /// Its NIP-40 expiration, if any.
    pub expires_at: Option<Timestamp>,
    /// The kind it was read from (31990, 30402 or 38383).
    pub kind: u16,
    /// The relays it was found on.
    pub relays: Vec<RelayUrl>,
    /// The offer.
    pub offer: NostrOffer,
}

/// Reads one offer event as seen at `now`: `Err` says why it is not a live offer.
pub fn parse_offer_event(event: &Event, now: Timestamp) -> Result<DiscoveredOffer, &'static str> {
    if event.is_expired_at(&now) {
        return Err("expired");
    }
    let kind = event.kind.as_u16();
    let json = match kind {
        KIND_HANDLER_INFO => {
            let serves_spawn = event
                .tags
                .filter(TagKind::k())
                .any(|t| t.content() == Some(&KIND_SPAWN.to_string()));
            if !serves_spawn {
                return Err("handler does not serve kind 1000");
            }
            event.content.as_str()
        }
        KIND_CLASSIFIED => fenced_json(&event.content).ok_or("no json block")?,
        KIND_OFFER_LEGACY => event.content.as_str(),
        _ => return Err("not an offer kind"),
    };
    if event.verify().is_err() {
        return Err("bad signature");
    }
    let offer = serde_json::from_str::<NostrOffer>(json).map_err(|_| "content is not an offer")?;
    Ok(DiscoveredOffer {
        service: event.pubkey,
        identifier: event.tags.identifier().unwrap_or_default().to_owned(),
        published_at: event.created_at,
        expires_at: event.tags.expiration().copied(),
        kind,
        relays: vec![],
        offer,
    })
}

/// Live offers among `events` (each with the relay it came from) at `now`: one per
/// service and `d` tag, the newest, with every relay it was seen on; newest first.
pub fn collect_offers(
    events: impl IntoIterator<Item = (RelayUrl, Event)>,
    now: Timestamp,
) -> Vec<DiscoveredOffer> {
    let mut by_key: HashMap<(PublicKey, String), DiscoveredOffer> = HashMap::new();
    for (relay, event) in events {
        let Ok(mut found) = parse_offer_event(&event, now) else {
            continue;
        };
        let key = (found.service, found.identifier.clone());
        match by_key.get_mut(&key) {
            Some(known) => {
                let mut relays = std::mem::take(&mut known.relays);
                // Prefer the newest, then the handler, the listing, the legacy kind.
                let rank = |o: &DiscoveredOffer| {
                    let kind = match o.kind {
                        KIND_HANDLER_INFO => 2,
                        KIND_CLASSIFIED => 1,
                        _ => 0,
                    };
                    (o.published_at, kind)
                };
                if rank(&found) > rank(known) {
                    *known = found;
                }
                if !relays.contains(&relay) {
                    relays.push(relay);
                }
                known.relays = relays;
            }
            None => {
                found.relays.push(relay);
                by_key.insert(key, found);
            }
        }
    }
    let mut offers: Vec<DiscoveredOffer> = by_key.into_values().collect();
    offers.sort_by_key(|o| std::cmp::Reverse(o.published_at));
    offers
}

#[cfg(test)]
mod tests {
    use nostr_sdk::Keys;
    use paygress_core::{MintUrl, Offer, TierOffer, Unit};

    use super::*;

    fn offer() -> NostrOffer {
        NostrOffer::new(Offer {
            name: "box".into(),
            version: "0.1.0".into(),
            rate_sats_per_hour: 60,
            rate_msat_per_hour: 60_000,
            tiers: vec![
                TierOffer {
                    id: "small".into(),
                    cpu_millicores: 500,
                    memory_mib: 512,
                    rate_msat_per_hour: 60_000,
                },
                TierOffer {
                    id: "big".into(),
                    cpu_millicores: 2000,
                    memory_mib: 4096,
                    rate_msat_per_hour: 240_500,
                },
            ],
            min_duration_minutes: 1,
            max_duration_minutes: 1440,
            mints: vec![MintUrl::new("http://127.0.0.1:3338")],
            units: vec![Unit::Sat],
            ssh_host: "127.0.0.1".into(),
            backend: "local".into(),
            images: vec!["img".into()],
            locking_key: None,
        })
    }

    fn meta(expires_at: Option<Timestamp>) -> OfferMeta {
        OfferMeta {
            identifier: "box".into(),
            expires_at,
            location: Some("Berlin".into()),
            legacy: false,
        }
    }

    fn tag_values(e: &Event, name: &str) -> Vec<Vec<String>> {
        e.tags
            .iter()
            .filter(|t| t.kind().to_string() == name)
            .map(|t| t.as_slice().to_vec())
            .collect()
    }

    #[test]
    fn handler_and_classified_carry_the_standard_tags_and_the_offer() {
        let keys = Keys::generate();
        let exp = Timestamp::now() + 7200;
        let events: Vec<Event> = offer_events(&offer(), &meta(Some(exp)))
            .unwrap()
            .into_iter()
            .map(|b| b.sign_with_keys(&keys).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "no legacy event by default");
        let (handler, classified) = (&events[0], &events[1]);
        assert_eq!(handler.kind, Kind::Custom(31990));
        let ks: Vec<String> = tag_values(handler, "k")
            .into_iter()
            .map(|v| v[1].clone())
            .collect();
        assert_eq!(ks, ["1000", "1002", "1003", "1004"]);
        assert_eq!(classified.kind, Kind::Custom(30402));
        assert_eq!(
            tag_values(classified, "price"),
            vec![
                vec!["price", "60", "SAT", "hour", "small"],
                vec!["price", "240.5", "SAT", "hour", "big"],
            ]
        );
        assert_eq!(tag_values(classified, "location")[0][1], "Berlin");
        assert!(tag_values(classified, "title")[0][1].contains("box"));
        assert!(tag_values(classified, "summary")[0][1].contains("60 sat/hour"));
        for e in &events {
            assert_eq!(e.tags.identifier(), Some("box"));
            assert_eq!(e.tags.expiration(), Some(&exp));
            let found = parse_offer_event(e, Timestamp::now()).unwrap();
            assert_eq!(found.offer, offer());
            assert_eq!(found.expires_at, Some(exp));
        }
        let legacy = offer_events(
            &offer(),
            &OfferMeta {
                legacy: true,
                ..meta(None)
            },
        )
        .unwrap();
        assert_eq!(legacy.len(), 3);
    }

    #[test]
    fn expired_foreign_and_forged_offers_are_not_live() {
        let keys = Keys::generate();
        let now = Timestamp::now();
        let sign = |b: EventBuilder| b.sign_with_keys(&keys).unwrap();
        let events = offer_events(&offer(), &meta(Some(now + 60))).unwrap();
        let handler = sign(events[0].clone());
        assert!(parse_offer_event(&handler, now).is_ok());
        assert_eq!(parse_offer_event(&handler, now + 61), Err("expired"));
        // A handler for other kinds only.
        let other = sign(
            EventBuilder::new(Kind::Custom(KIND_HANDLER_INFO), handler.content.clone())
                .tag(Tag::custom(TagKind::k(), ["1"])),
        );
        assert!(parse_offer_event(&other, now).is_err());
        let mut forged = handler.clone();
        forged.content = forged.content.replace("60000", "1");
        assert_eq!(parse_offer_event(&forged, now), Err("bad signature"));
    }

    #[test]
    fn one_offer_per_service_and_d_tag_with_all_its_relays() {
        let keys = Keys::generate();
        let now = Timestamp::now();
        let events = offer_events(&offer(), &meta(Some(now + 60))).unwrap();
        let a = RelayUrl::parse("ws://127.0.0.1:1").unwrap();
        let b = RelayUrl::parse("ws://127.0.0.1:2").unwrap();
        let signed: Vec<Event> = events
            .into_iter()
            .map(|e| e.sign_with_keys(&keys).unwrap())
            .collect();
        let found = collect_offers(
            [
                (b.clone(), signed[1].clone()),
                (a.clone(), signed[0].clone()),
                (a.clone(), signed[1].clone()),
            ],
            now,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].relays, vec![b, a]);
        assert_eq!(
            found[0].kind, KIND_HANDLER_INFO,
            "same second: the handler wins"
        );
    }

    #[test]
    fn prices_per_tier() {
        let o = offer();
        assert_eq!(price_msat_per_hour(&o, None), Some(60_000));
        assert_eq!(price_msat_per_hour(&o, Some("big")), Some(240_500));
        assert_eq!(price_msat_per_hour(&o, Some("huge")), None);
        assert_eq!(sat_string(1), "0.001");
        assert_eq!(sat_string(1500), "1.5");
    }
}
