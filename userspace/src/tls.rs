//! TLS to the backends, and the leasequery listener's server side ([`server_config`],
//! `[bulk-leasequery] tls`; its requestor `xdhcpd leasequery --tls-*` uses [`client_config`]).
//!
//! Backends: PostgreSQL (`[registrations.postgres]`, `xdhcpd events archive`,
//! `xdhcpd ctl history --archive`) and NATS (`[event-log.nats]`, `xdhcpd events archive`).
//!
//! One rustls client configuration (ring provider, the rustls that async-nats brings) made
//! from a [`TlsClientConfig`]: the trust anchors are exactly the certificates of `ca-file`
//! (the system's store is not used), and a client certificate when `cert-file` / `key-file`
//! are set. Every error names the configuration key (`what`: e.g.
//! `registrations.postgres.ca-file`) and the file. For PostgreSQL, [`PgTls`] is the
//! tokio-postgres connector over tokio-rustls; NATS gets the files' paths (async-nats loads
//! them) after [`check_files`] has read them once, so that a bad file is reported by key here
//! and not as a connection failure.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{bail, Context};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use xdhcpd_config::TlsClientConfig;

/// The name of setting `k` of `what`: `registrations.postgres` + `ca-file` ->
/// `registrations.postgres.ca-file`; a command-line prefix `--nats` -> `--nats-ca-file`.
pub fn key(what: &str, k: &str) -> String {
    if what.starts_with("--") {
        format!("{what}-{k}")
    } else {
        format!("{what}.{k}")
    }
}

/// The certificates of a PEM file (at least one).
fn certs(path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let text = std::fs::read(path).with_context(|| format!("{key}: reading {}", path.display()))?;
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(&text) {
        out.push(c.map_err(|e| anyhow::anyhow!("{key}: {}: {e}", path.display()))?);
    }
    if out.is_empty() {
        bail!(
            "{key}: {}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(out)
}

fn private_key(path: &Path, key: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let text = std::fs::read(path).with_context(|| format!("{key}: reading {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        anyhow::anyhow!(
            "{key}: {}: no private key in it ({e}; expected PEM: PKCS#8, PKCS#1 or SEC1)",
            path.display()
        )
    })
}

/// Reads every file of `tls` once (`what`: the section, e.g. `event-log.nats`), so that a
/// missing or malformed file is reported with its key before any connection is tried.
pub fn check_files(tls: &TlsClientConfig, what: &str) -> anyhow::Result<()> {
    client_config(tls, what).map(|_| ())
}

/// The rustls client configuration of `tls` (`what`: the section or option prefix the
/// errors name, e.g. `registrations.postgres`).
pub fn client_config(tls: &TlsClientConfig, what: &str) -> anyhow::Result<ClientConfig> {
    let ca_key = key(what, "ca-file");
    let builder = ClientConfig::builder().with_root_certificates(roots(&tls.ca_file, &ca_key)?);
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(kf)) => {
            let chain = certs(cert, &key(what, "cert-file"))?;
            let k = private_key(kf, &key(what, "key-file"))?;
            builder.with_client_auth_cert(chain, k).map_err(|e| {
                anyhow::anyhow!(
                    "{} / {}: {} and {} do not make a client certificate: {e}",
                    key(what, "cert-file"),
                    key(what, "key-file"),
                    cert.display(),
                    kf.display()
                )
            })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => bail!("{what}: a client certificate needs both cert-file and key-file"),
    }
}

/// The trust anchors of a CA file (every certificate in it).
fn roots(path: &Path, key: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certs(path, key)? {
        roots.add(c).map_err(|e| {
            anyhow::anyhow!(
                "{key}: {}: not a usable CA certificate: {e}",
                path.display()
            )
        })?;
    }
    Ok(roots)
}

/// A rustls server configuration (the leasequery listener's, RFC 7724 DHCPTLS): the
/// certificate chain of `cert_file` with the key of `key_file`; with `client_ca_file`, a
/// client must present a certificate signed by one of its CAs. `what` names the section in
/// errors (`bulk-leasequery` -> `bulk-leasequery.cert-file: ...`).
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
    what: &str,
) -> anyhow::Result<ServerConfig> {
    let chain = certs(cert_file, &key(what, "cert-file"))?;
    let k = private_key(key_file, &key(what, "key-file"))?;
    let builder = ServerConfig::builder();
    let builder = match client_ca_file {
        Some(ca) => {
            let ca_key = key(what, "client-ca-file");
            let v = WebPkiClientVerifier::builder(Arc::new(roots(ca, &ca_key)?))
                .build()
                .map_err(|e| anyhow::anyhow!("{ca_key}: {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, k).map_err(|e| {
        anyhow::anyhow!(
            "{} / {}: {} and {} do not make a server certificate: {e}",
            key(what, "cert-file"),
            key(what, "key-file"),
            cert_file.display(),
            key_file.display()
        )
    })
}

/// tokio-postgres' TLS connector over tokio-rustls (`sslmode=require`: TLS or nothing; the
/// server's certificate is verified against the CA file and the host name or address).
#[derive(Clone)]
pub struct PgTls {
    config: Arc<ClientConfig>,
    /// The CA file's key, named in a failed handshake's message.
    ca_key: Arc<str>,
}

impl PgTls {
    pub fn new(tls: &TlsClientConfig, what: &str) -> anyhow::Result<PgTls> {
        Ok(PgTls {
            config: Arc::new(client_config(tls, what)?),
            ca_key: key(what, "ca-file").into(),
        })
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<PgTlsConnect> {
        let name = ServerName::try_from(domain.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS: `{domain}` is not a host name or address to verify: {e}"),
            )
        })?;
        Ok(PgTlsConnect {
            config: self.config.clone(),
            name,
            ca_key: self.ca_key.clone(),
        })
    }
}

/// One connection's handshake.
pub struct PgTlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    ca_key: Arc<str>,
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let host = self.name.to_str().into_owned();
            tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await
                .map(PgTlsStream)
                .map_err(|e| {
                    let hint = if e.to_string().contains("certificate") {
                        format!(
                            " (is {} the CA that signed the server's certificate, and is \
                             {host} among the certificate's names?)",
                            self.ca_key
                        )
                    } else {
                        String::new()
                    };
                    io::Error::new(e.kind(), format!("TLS handshake with {host}: {e}{hint}"))
                })
        })
    }
}

/// A TLS connection to PostgreSQL.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding (tokio-postgres' default `prefer` accepts it).
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_errors_name_the_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let cfg = TlsClientConfig {
            ca_file: empty.clone(),
            cert_file: None,
            key_file: None,
        };
        let e = format!("{:#}", check_files(&cfg, "event-log.nats").unwrap_err());
        assert!(
            e.starts_with("event-log.nats.ca-file: ") && e.contains("no certificate in it"),
            "{e}"
        );
        let missing = TlsClientConfig {
            ca_file: dir.path().join("nope.pem"),
            ..cfg
        };
        let e = format!(
            "{:#}",
            PgTls::new(&missing, "registrations.postgres")
                .err()
                .unwrap()
        );
        assert!(
            e.starts_with("registrations.postgres.ca-file: reading ") && e.contains("nope.pem"),
            "{e}"
        );
    }
}
