//! The token payload's binary encoding (the layout in the `token` module's
//! doc), written from [`Claims`] and read back strictly: only what `Claims`
//! can write is read. The MAC around it is the `token` module's.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Claims, MAX_SCOPE_LEN, MAX_SESSION_LEN, Refusal, TOKEN_VERSION, TokenScope};
use crate::keyring::{KeyId, MAX_KEY_ID_LEN};

const FLAG_NOT_BEFORE: u8 = 1;
const FLAG_CLIENT: u8 = 1 << 1;
const FLAG_SESSION: u8 = 1 << 2;
const KNOWN_FLAGS: u8 = FLAG_NOT_BEFORE | FLAG_CLIENT | FLAG_SESSION;

impl Claims {
    pub(super) fn encode_payload(&self, key_id: &KeyId) -> Vec<u8> {
        let mut payload = Vec::with_capacity(64 + self.scope.0.len());
        let mut flags = 0;
        if self.not_before.is_some() {
            flags |= FLAG_NOT_BEFORE;
        }
        if self.client.is_some() {
            flags |= FLAG_CLIENT;
        }
        if self.session.is_some() {
            flags |= FLAG_SESSION;
        }
        payload.push(TOKEN_VERSION);
        payload.push(flags);
        // Lengths fit a byte: key ids, scopes and sessions are bounded on
        // construction.
        payload.push(key_id.as_str().len() as u8);
        payload.extend_from_slice(key_id.as_str().as_bytes());
        payload.extend_from_slice(&self.expires_at.to_be_bytes());
        if let Some(not_before) = self.not_before {
            payload.extend_from_slice(&not_before.to_be_bytes());
        }
        payload.push(self.scope.0.len() as u8);
        payload.extend_from_slice(self.scope.0.as_bytes());
        if let Some(network) = self.client {
            match network {
                IpNet::V4(v4) => {
                    payload.push(4);
                    payload.extend_from_slice(&v4.addr().octets());
                }
                IpNet::V6(v6) => {
                    payload.push(6);
                    payload.extend_from_slice(&v6.addr().octets());
                }
            }
            payload.push(network.prefix_len());
        }
        if let Some(session) = &self.session {
            payload.push(session.len() as u8);
            payload.extend_from_slice(session.as_bytes());
        }
        payload
    }
}

/// Reads the token payload; `Malformed` on anything but an exact encoding.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], Refusal> {
        if self.bytes.len() < count {
            return Err(Refusal::Malformed);
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, Refusal> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, Refusal> {
        let bytes: [u8; 8] = self.take(8)?.try_into().expect("took 8 bytes");
        Ok(u64::from_be_bytes(bytes))
    }

    fn text(&mut self, max: usize) -> Result<&'a str, Refusal> {
        let length = self.byte()? as usize;
        if length == 0 || length > max {
            return Err(Refusal::Malformed);
        }
        std::str::from_utf8(self.take(length)?).map_err(|_| Refusal::Malformed)
    }
}

pub(super) struct Decoded<'a> {
    pub(super) key_id: &'a str,
    pub(super) expires_at: u64,
    pub(super) not_before: Option<u64>,
    pub(super) scope: TokenScope,
    pub(super) client: Option<IpNet>,
    pub(super) session: Option<&'a str>,
}

pub(super) fn decode_payload(payload: &[u8]) -> Result<Decoded<'_>, Refusal> {
    let mut reader = Reader { bytes: payload };
    if reader.byte()? != TOKEN_VERSION {
        return Err(Refusal::Malformed);
    }
    let flags = reader.byte()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Refusal::Malformed);
    }
    let key_id = reader.text(MAX_KEY_ID_LEN)?;
    let expires_at = reader.u64()?;
    let not_before = if flags & FLAG_NOT_BEFORE != 0 {
        Some(reader.u64()?)
    } else {
        None
    };
    let scope = TokenScope::new(reader.text(MAX_SCOPE_LEN)?).map_err(|_| Refusal::Malformed)?;
    let client = if flags & FLAG_CLIENT != 0 {
        let address: IpAddr = match reader.byte()? {
            4 => <[u8; 4]>::try_from(reader.take(4)?)
                .expect("took 4 bytes")
                .into(),
            6 => <[u8; 16]>::try_from(reader.take(16)?)
                .expect("took 16 bytes")
                .into(),
            _ => return Err(Refusal::Malformed),
        };
        let prefix = reader.byte()?;
        Some(IpNet::new(address, prefix).map_err(|_| Refusal::Malformed)?)
    } else {
        None
    };
    let session = if flags & FLAG_SESSION != 0 {
        Some(reader.text(MAX_SESSION_LEN)?)
    } else {
        None
    };
    if !reader.bytes.is_empty() {
        return Err(Refusal::Malformed);
    }
    // Only what `Claims` can write is read: an empty window, a network with
    // host bits or in IPv4-mapped form, or a session of other than visible
    // ASCII would be claims no signer meant, or a second encoding of some.
    let canonical_client = client.is_none_or(|network| {
        let mapped = match network {
            IpNet::V6(v6) => v6.prefix_len() >= 96 && v6.addr().to_ipv4_mapped().is_some(),
            IpNet::V4(_) => false,
        };
        network == network.trunc() && !mapped
    });
    if not_before.is_some_and(|not_before| not_before >= expires_at)
        || !canonical_client
        || session.is_some_and(|session| !session.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(Refusal::Malformed);
    }
    Ok(Decoded {
        key_id,
        expires_at,
        not_before,
        scope,
        client,
        session,
    })
}
