//! Who may talk to a node: mutually authenticated, encrypted peer
//! connections, and node identity keys.
//!
//! Every node has a static ed25519 key pair; the cluster file lists each
//! node's public key (`public_key = "ed25519:BASE64"`) and each node reads
//! its private key from `KEY_DIR/NAME.key` (PKCS#8 PEM, mode 0600, written
//! by `agora cluster keys`). Peer connections are TLS 1.3 (rustls) with
//! **raw public keys** (RFC 7250) on both sides, pinned to the cluster
//! file: the dialler accepts only the key listed for the node it dials, the
//! acceptor only keys listed for some node, and the `Hello` that follows
//! must name the node whose key authenticated the connection. No CA, no
//! certificates to expire; a key not in the file gets nowhere. TLS's AEAD
//! record protection closes a connection whose bytes were altered or
//! replayed.
//!
//! The same keys give protocols their signing capability
//! ([`agora_core::keys::Keyring`]).

use agora_core::keys::Keyring;
use agora_core::NodeId;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// `ed25519:BASE64` of the 32-byte public key.
pub fn public_key_string(k: &VerifyingKey) -> String {
    use base64::Engine;
    format!("ed25519:{}", base64::engine::general_purpose::STANDARD.encode(k.as_bytes()))
}

pub fn parse_public_key(s: &str) -> Result<VerifyingKey, String> {
    use base64::Engine;
    let b64 = s.strip_prefix("ed25519:").ok_or_else(|| format!("{s:?} does not start with \"ed25519:\""))?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("{s:?}: {e}"))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| format!("{s:?} is not 32 bytes of key"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("{s:?} is not an ed25519 public key: {e}"))
}

/// A new key pair from the operating system's randomness.
pub fn generate_key() -> SigningKey {
    use rand::TryRngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut seed).expect("the OS has randomness");
    SigningKey::from_bytes(&seed)
}

// PKCS#8 v1 and SubjectPublicKeyInfo for ed25519 (RFC 8410) are fixed
// prefixes before the 32 key bytes.
const PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

fn pkcs8(k: &SigningKey) -> Vec<u8> {
    [&PKCS8_PREFIX[..], &k.to_bytes()].concat()
}

/// The DER SubjectPublicKeyInfo that a raw-public-key handshake presents.
pub fn spki(k: &VerifyingKey) -> Vec<u8> {
    [&SPKI_PREFIX[..], k.as_bytes()].concat()
}

/// Writes a secret (a key, a token) readable by its owner only. Whatever
/// was at `path` is replaced, never written through: a symbolic link
/// planted there is removed, not followed.
pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // O_CREAT | O_EXCL: fails on anything (a link included) that appeared meanwhile.
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    writeln!(f, "{text}")
}

/// The most a key or token file may hold: both are well under a kilobyte.
pub const SECRET_FILE_MAX_BYTES: u64 = 64 * 1024;

/// Reads a secret file (a private key, a token) after checking it is what
/// it should be: a regular file (not a pipe, a device or a directory), not
/// a symbolic link, readable by its owner only, and at most
/// [`SECRET_FILE_MAX_BYTES`]. With `loose`, a link or wider permissions are
/// accepted (with a warning): for secrets mounted by a tool that makes them
/// so. Errors name the path and say how to fix it.
pub fn read_secret_file(path: &Path, loose: bool) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let p = path.display();
    let link = std::fs::symlink_metadata(path).map_err(|e| format!("{p}: {e}"))?;
    if link.file_type().is_symlink() {
        if !loose {
            return Err(format!(
                "{p} is a symbolic link: point the configuration at the file itself, or set [security] loose_key_files = true"
            ));
        }
        tracing::warn!(path = %p, "secret file is a symbolic link (loose_key_files)");
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("{p}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{p} is not a regular file (a pipe, a device or a directory cannot hold a key or token)"));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        if !loose {
            return Err(format!(
                "{p} can be read by others (mode {mode:03o}): run `chmod 600 {p}`, or set [security] loose_key_files = true"
            ));
        }
        tracing::warn!(path = %p, mode = format!("{mode:03o}"), "secret file readable by others (loose_key_files)");
    }
    // Non-blocking, and not through a link: a file swapped for a pipe or a
    // link after the checks neither hangs the open nor is followed.
    let no_follow = if loose { 0 } else { libc::O_NOFOLLOW };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | no_follow)
        .open(path)
        .map_err(|e| format!("{p}: {e}"))?;
    if !f.metadata().map_err(|e| format!("{p}: {e}"))?.is_file() {
        return Err(format!("{p} is not a regular file"));
    }
    let mut text = String::new();
    f.take(SECRET_FILE_MAX_BYTES + 1).read_to_string(&mut text).map_err(|e| format!("{p}: {e}"))?;
    if text.len() as u64 > SECRET_FILE_MAX_BYTES {
        return Err(format!("{p} is larger than {SECRET_FILE_MAX_BYTES} bytes: not a key or token file"));
    }
    Ok(text)
}

/// Writes a private key as PKCS#8 PEM, readable by its owner only.
pub fn write_key(path: &Path, k: &SigningKey) -> std::io::Result<()> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8(k));
    write_secret(path, &format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----"))
}

/// Reads a private key written by [`write_key`] (or `openssl genpkey
/// -algorithm ed25519`), checked as [`read_secret_file`] does.
pub fn read_key(path: &Path, loose: bool) -> Result<SigningKey, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = read_secret_file(path, loose)?;
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = der.secret_pkcs8_der();
    match bytes.strip_prefix(&PKCS8_PREFIX[..]) {
        Some(seed) if seed.len() == 32 => Ok(SigningKey::from_bytes(seed.try_into().expect("32 bytes"))),
        _ => Err(format!("{}: not an ed25519 private key in PKCS#8", path.display())),
    }
}

/// The TLS side of a node: its own key and the cluster's public keys.
pub struct Tls {
    pub server: Arc<rustls::ServerConfig>,
    /// One client configuration per peer, pinned to that peer's key.
    clients: Vec<Arc<rustls::ClientConfig>>,
    spkis: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls {{ {} pinned keys }}", self.spkis.len()) // never the secret
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug)]
struct Pinned {
    /// Acceptable SPKIs (one for a dialler, every node's for the acceptor).
    keys: Vec<Vec<u8>>,
    algs: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.keys.iter().any(|k| k.as_slice() == cert.as_ref()) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        }
    }
}

/// The signature half, the same for both sides: TLS 1.3 only (no other
/// version is offered), ed25519 only, raw public keys only.
macro_rules! pinned_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("only TLS 1.3 is spoken".into()))
        }
        fn verify_tls13_signature(
            &self,
            msg: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature_with_raw_key(msg, &SubjectPublicKeyInfoDer::from(cert.as_ref()), dss, &self.algs)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }
        fn requires_raw_public_keys(&self) -> bool {
            true
        }
    };
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ServerCertVerified::assertion())
    }
    pinned_signatures!();
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ClientCertVerified::assertion())
    }
    pinned_signatures!();
}

impl Tls {
    /// `public[i]` is node `i`'s key; `secret` is this node's.
    pub fn new(secret: &SigningKey, public: &[VerifyingKey]) -> Result<Tls, String> {
        let p = provider();
        let signing = p
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(pkcs8(secret).into()))
            .map_err(|e| format!("the private key does not load: {e}"))?;
        let me = Arc::new(CertifiedKey::new(vec![CertificateDer::from(spki(&secret.verifying_key()))], signing));
        let spkis: Vec<Vec<u8>> = public.iter().map(spki).collect();
        let algs = p.signature_verification_algorithms;
        let server = rustls::ServerConfig::builder_with_provider(p.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(Arc::new(Pinned { keys: spkis.clone(), algs }))
            .with_cert_resolver(Arc::new(rustls::server::AlwaysResolvesServerRawPublicKeys::new(me.clone())));
        let clients = spkis
            .iter()
            .map(|k| {
                let c = rustls::ClientConfig::builder_with_provider(p.clone())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(|e| e.to_string())?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Pinned { keys: vec![k.clone()], algs }))
                    .with_client_cert_resolver(Arc::new(rustls::client::AlwaysResolvesClientRawPublicKeys::new(
                        me.clone(),
                    )));
                Ok(Arc::new(c))
            })
            .collect::<Result<_, String>>()?;
        Ok(Tls { server: Arc::new(server), clients, spkis })
    }

    /// The client configuration that accepts only `peer`'s key.
    pub fn client_for(&self, peer: NodeId) -> Option<Arc<rustls::ClientConfig>> {
        self.clients.get(peer.index()).cloned()
    }

    /// The node whose key `presented` is.
    pub fn node_of(&self, presented: &[u8]) -> Option<NodeId> {
        self.spkis.iter().position(|k| k.as_slice() == presented).map(|i| NodeId(i as u32))
    }
}

/// A node's identity: its TLS configuration and its signing keyring.
pub struct Identity {
    pub tls: Tls,
    pub keyring: Arc<Keyring>,
}

impl Identity {
    pub fn new(me: NodeId, secret: SigningKey, public: Vec<VerifyingKey>) -> Result<Identity, String> {
        let tls = Tls::new(&secret, &public)?;
        Ok(Identity { tls, keyring: Arc::new(Keyring::new(me, secret, public)) })
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity {{ {:?} }}", self.tls)
    }
}

/// Compares a presented bearer token with the configured one in constant time.
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    presented.len() == expected.len() && bool::from(presented.ct_eq(expected))
}

/// A new random control token (32 bytes, hex).
pub fn generate_token() -> String {
    use rand::TryRngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut b).expect("the OS has randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}
