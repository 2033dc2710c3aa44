//! A throwaway PKI for the DTLS tests, made with OpenSSL at test time: a CA, and a server
//! and a client certificate it signed (EC P-256, valid for a day, the server's for
//! 127.0.0.1, ::1 and localhost). Nothing is read from or written to the repository.
#![allow(dead_code)]

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};

/// PEM texts of a CA certificate and of two certificates with their keys.
pub(crate) struct Pki {
    pub(crate) ca: Vec<u8>,
    pub(crate) server_cert: Vec<u8>,
    pub(crate) server_key: Vec<u8>,
    pub(crate) client_cert: Vec<u8>,
    pub(crate) client_key: Vec<u8>,
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn cert(
    name: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    server: bool,
) -> X509 {
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_nid(Nid::COMMONNAME, name).unwrap();
    let n = n.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&n).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    match issuer {
        None => {
            b.set_issuer_name(&n).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(KeyUsage::new().key_cert_sign().build().unwrap())
                .unwrap();
        }
        Some((ca, _)) => {
            b.set_issuer_name(ca.subject_name()).unwrap();
            if server {
                let san = SubjectAlternativeName::new()
                    .ip("127.0.0.1")
                    .ip("::1")
                    .dns("localhost")
                    .build(&b.x509v3_context(Some(ca), None))
                    .unwrap();
                b.append_extension(san).unwrap();
            }
        }
    }
    let signer = issuer.map_or(key, |(_, k)| k);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    b.build()
}

/// A new CA with a server and a client certificate.
pub(crate) fn pki() -> Pki {
    let ca_key = key();
    let ca = cert("coapio test CA", &ca_key, None, false);
    let server_key = key();
    let server = cert("localhost", &server_key, Some((&ca, &ca_key)), true);
    let client_key = key();
    let client = cert(
        "coapio test client",
        &client_key,
        Some((&ca, &ca_key)),
        false,
    );
    Pki {
        ca: ca.to_pem().unwrap(),
        server_cert: server.to_pem().unwrap(),
        server_key: server_key.private_key_to_pem_pkcs8().unwrap(),
        client_cert: client.to_pem().unwrap(),
        client_key: client_key.private_key_to_pem_pkcs8().unwrap(),
    }
}
