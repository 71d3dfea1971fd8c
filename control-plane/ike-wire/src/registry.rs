//! IANA registries as open newtypes (RFC 7296 §3, IANA "IKEv2 Parameters"):
//! unknown values survive a round trip and print as numbers.

macro_rules! registry {
    ($(#[$doc:meta])* $name:ident($ty:ty) { $($(#[$vdoc:meta])* $konst:ident = $val:expr => $label:expr,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $ty);

        impl $name {
            $($(#[$vdoc])* pub const $konst: $name = $name($val);)*

            /// The registry name of a known value.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some($label),)*
                    _ => None,
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Display::fmt(self, f)
            }
        }
    };
}

registry! {
    /// Exchange types (RFC 7296 §3.1).
    ExchangeType(u8) {
        /// IKE_SA_INIT.
        IKE_SA_INIT = 34 => "IKE_SA_INIT",
        /// IKE_AUTH.
        IKE_AUTH = 35 => "IKE_AUTH",
        /// CREATE_CHILD_SA.
        CREATE_CHILD_SA = 36 => "CREATE_CHILD_SA",
        /// INFORMATIONAL.
        INFORMATIONAL = 37 => "INFORMATIONAL",
        /// IKE_INTERMEDIATE (RFC 9242).
        IKE_INTERMEDIATE = 43 => "IKE_INTERMEDIATE",
    }
}

registry! {
    /// Payload types (RFC 7296 §3.2, RFC 7383).
    PayloadType(u8) {
        /// No next payload.
        NONE = 0 => "NONE",
        /// Security Association.
        SA = 33 => "SA",
        /// Key Exchange.
        KE = 34 => "KE",
        /// Identification - Initiator.
        IDI = 35 => "IDi",
        /// Identification - Responder.
        IDR = 36 => "IDr",
        /// Certificate.
        CERT = 37 => "CERT",
        /// Certificate Request.
        CERTREQ = 38 => "CERTREQ",
        /// Authentication.
        AUTH = 39 => "AUTH",
        /// Nonce.
        NONCE = 40 => "No",
        /// Notify.
        NOTIFY = 41 => "N",
        /// Delete.
        DELETE = 42 => "D",
        /// Vendor ID.
        VENDOR = 43 => "V",
        /// Traffic Selector - Initiator.
        TSI = 44 => "TSi",
        /// Traffic Selector - Responder.
        TSR = 45 => "TSr",
        /// Encrypted and Authenticated.
        SK = 46 => "SK",
        /// Configuration.
        CP = 47 => "CP",
        /// Extensible Authentication.
        EAP = 48 => "EAP",
        /// Encrypted and Authenticated Fragment (RFC 7383).
        SKF = 53 => "SKF",
    }
}

registry! {
    /// Transform types (RFC 7296 §3.3.2).
    TransformType(u8) {
        /// Encryption algorithm.
        ENCR = 1 => "ENCR",
        /// Pseudorandom function.
        PRF = 2 => "PRF",
        /// Integrity algorithm.
        INTEG = 3 => "INTEG",
        /// Diffie-Hellman group (Key Exchange Method).
        DH = 4 => "DH",
        /// Extended sequence numbers.
        ESN = 5 => "ESN",
    }
}

registry! {
    /// Security protocol identifiers (RFC 7296 §3.3.1).
    ProtocolId(u8) {
        /// None (notifications about the IKE SA).
        NONE = 0 => "NONE",
        /// IKE.
        IKE = 1 => "IKE",
        /// AH.
        AH = 2 => "AH",
        /// ESP.
        ESP = 3 => "ESP",
    }
}

registry! {
    /// Encryption transform IDs (Transform Type 1).
    EncrId(u16) {
        /// ENCR_3DES.
        TRIPLE_DES = 3 => "3DES_CBC",
        /// ENCR_NULL.
        NULL = 11 => "NULL",
        /// ENCR_AES_CBC.
        AES_CBC = 12 => "AES_CBC",
        /// ENCR_AES_CTR.
        AES_CTR = 13 => "AES_CTR",
        /// ENCR_AES_GCM with an 8-octet ICV.
        AES_GCM_8 = 18 => "AES_GCM_8",
        /// ENCR_AES_GCM with a 12-octet ICV.
        AES_GCM_12 = 19 => "AES_GCM_12",
        /// ENCR_AES_GCM with a 16-octet ICV.
        AES_GCM_16 = 20 => "AES_GCM_16",
        /// ENCR_CHACHA20_POLY1305.
        CHACHA20_POLY1305 = 28 => "CHACHA20_POLY1305",
    }
}

registry! {
    /// PRF transform IDs (Transform Type 2).
    PrfId(u16) {
        /// PRF_HMAC_SHA1.
        HMAC_SHA1 = 2 => "PRF_HMAC_SHA1",
        /// PRF_HMAC_SHA2_256.
        HMAC_SHA2_256 = 5 => "PRF_HMAC_SHA2_256",
        /// PRF_HMAC_SHA2_384.
        HMAC_SHA2_384 = 6 => "PRF_HMAC_SHA2_384",
        /// PRF_HMAC_SHA2_512.
        HMAC_SHA2_512 = 7 => "PRF_HMAC_SHA2_512",
    }
}

registry! {
    /// Integrity transform IDs (Transform Type 3).
    IntegId(u16) {
        /// NONE.
        NONE = 0 => "NONE",
        /// AUTH_HMAC_SHA1_96.
        HMAC_SHA1_96 = 2 => "HMAC_SHA1_96",
        /// AUTH_HMAC_SHA2_256_128.
        HMAC_SHA2_256_128 = 12 => "HMAC_SHA2_256_128",
        /// AUTH_HMAC_SHA2_384_192.
        HMAC_SHA2_384_192 = 13 => "HMAC_SHA2_384_192",
        /// AUTH_HMAC_SHA2_512_256.
        HMAC_SHA2_512_256 = 14 => "HMAC_SHA2_512_256",
    }
}

registry! {
    /// Diffie-Hellman groups (Transform Type 4).
    DhGroup(u16) {
        /// NONE.
        NONE = 0 => "NONE",
        /// 2048-bit MODP.
        MODP_2048 = 14 => "MODP_2048",
        /// 3072-bit MODP.
        MODP_3072 = 15 => "MODP_3072",
        /// 4096-bit MODP.
        MODP_4096 = 16 => "MODP_4096",
        /// 256-bit random ECP.
        ECP_256 = 19 => "ECP_256",
        /// 384-bit random ECP.
        ECP_384 = 20 => "ECP_384",
        /// 521-bit random ECP.
        ECP_521 = 21 => "ECP_521",
        /// Curve25519.
        CURVE_25519 = 31 => "CURVE_25519",
        /// Curve448.
        CURVE_448 = 32 => "CURVE_448",
    }
}

registry! {
    /// Notify message types (RFC 7296 §3.10.1 and later RFCs).
    NotifyType(u16) {
        /// UNSUPPORTED_CRITICAL_PAYLOAD.
        UNSUPPORTED_CRITICAL_PAYLOAD = 1 => "UNSUPPORTED_CRITICAL_PAYLOAD",
        /// INVALID_IKE_SPI.
        INVALID_IKE_SPI = 4 => "INVALID_IKE_SPI",
        /// INVALID_MAJOR_VERSION.
        INVALID_MAJOR_VERSION = 5 => "INVALID_MAJOR_VERSION",
        /// INVALID_SYNTAX.
        INVALID_SYNTAX = 7 => "INVALID_SYNTAX",
        /// INVALID_MESSAGE_ID.
        INVALID_MESSAGE_ID = 9 => "INVALID_MESSAGE_ID",
        /// INVALID_SPI.
        INVALID_SPI = 11 => "INVALID_SPI",
        /// NO_PROPOSAL_CHOSEN.
        NO_PROPOSAL_CHOSEN = 14 => "NO_PROPOSAL_CHOSEN",
        /// INVALID_KE_PAYLOAD.
        INVALID_KE_PAYLOAD = 17 => "INVALID_KE_PAYLOAD",
        /// AUTHENTICATION_FAILED.
        AUTHENTICATION_FAILED = 24 => "AUTHENTICATION_FAILED",
        /// SINGLE_PAIR_REQUIRED.
        SINGLE_PAIR_REQUIRED = 34 => "SINGLE_PAIR_REQUIRED",
        /// NO_ADDITIONAL_SAS.
        NO_ADDITIONAL_SAS = 35 => "NO_ADDITIONAL_SAS",
        /// INTERNAL_ADDRESS_FAILURE.
        INTERNAL_ADDRESS_FAILURE = 36 => "INTERNAL_ADDRESS_FAILURE",
        /// FAILED_CP_REQUIRED.
        FAILED_CP_REQUIRED = 37 => "FAILED_CP_REQUIRED",
        /// TS_UNACCEPTABLE.
        TS_UNACCEPTABLE = 38 => "TS_UNACCEPTABLE",
        /// INVALID_SELECTORS.
        INVALID_SELECTORS = 39 => "INVALID_SELECTORS",
        /// TEMPORARY_FAILURE.
        TEMPORARY_FAILURE = 43 => "TEMPORARY_FAILURE",
        /// CHILD_SA_NOT_FOUND.
        CHILD_SA_NOT_FOUND = 44 => "CHILD_SA_NOT_FOUND",
        /// INITIAL_CONTACT.
        INITIAL_CONTACT = 16384 => "INITIAL_CONTACT",
        /// SET_WINDOW_SIZE.
        SET_WINDOW_SIZE = 16385 => "SET_WINDOW_SIZE",
        /// ADDITIONAL_TS_POSSIBLE.
        ADDITIONAL_TS_POSSIBLE = 16386 => "ADDITIONAL_TS_POSSIBLE",
        /// IPCOMP_SUPPORTED.
        IPCOMP_SUPPORTED = 16387 => "IPCOMP_SUPPORTED",
        /// NAT_DETECTION_SOURCE_IP.
        NAT_DETECTION_SOURCE_IP = 16388 => "NAT_DETECTION_SOURCE_IP",
        /// NAT_DETECTION_DESTINATION_IP.
        NAT_DETECTION_DESTINATION_IP = 16389 => "NAT_DETECTION_DESTINATION_IP",
        /// COOKIE.
        COOKIE = 16390 => "COOKIE",
        /// USE_TRANSPORT_MODE.
        USE_TRANSPORT_MODE = 16391 => "USE_TRANSPORT_MODE",
        /// HTTP_CERT_LOOKUP_SUPPORTED.
        HTTP_CERT_LOOKUP_SUPPORTED = 16392 => "HTTP_CERT_LOOKUP_SUPPORTED",
        /// REKEY_SA.
        REKEY_SA = 16393 => "REKEY_SA",
        /// ESP_TFC_PADDING_NOT_SUPPORTED.
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394 => "ESP_TFC_PADDING_NOT_SUPPORTED",
        /// NON_FIRST_FRAGMENTS_ALSO.
        NON_FIRST_FRAGMENTS_ALSO = 16395 => "NON_FIRST_FRAGMENTS_ALSO",
        /// MOBIKE_SUPPORTED (RFC 4555).
        MOBIKE_SUPPORTED = 16396 => "MOBIKE_SUPPORTED",
        /// ADDITIONAL_IP4_ADDRESS (RFC 4555).
        ADDITIONAL_IP4_ADDRESS = 16397 => "ADDITIONAL_IP4_ADDRESS",
        /// ADDITIONAL_IP6_ADDRESS (RFC 4555).
        ADDITIONAL_IP6_ADDRESS = 16398 => "ADDITIONAL_IP6_ADDRESS",
        /// NO_ADDITIONAL_ADDRESSES (RFC 4555).
        NO_ADDITIONAL_ADDRESSES = 16399 => "NO_ADDITIONAL_ADDRESSES",
        /// UPDATE_SA_ADDRESSES (RFC 4555).
        UPDATE_SA_ADDRESSES = 16400 => "UPDATE_SA_ADDRESSES",
        /// REDIRECT_SUPPORTED (RFC 5685).
        REDIRECT_SUPPORTED = 16406 => "REDIRECT_SUPPORTED",
        /// REDIRECT (RFC 5685).
        REDIRECT = 16407 => "REDIRECT",
        /// IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383).
        IKEV2_FRAGMENTATION_SUPPORTED = 16430 => "IKEV2_FRAGMENTATION_SUPPORTED",
        /// SIGNATURE_HASH_ALGORITHMS (RFC 7427).
        SIGNATURE_HASH_ALGORITHMS = 16431 => "SIGNATURE_HASH_ALGORITHMS",
        /// CHILDLESS_IKEV2_SUPPORTED (RFC 6023).
        CHILDLESS_IKEV2_SUPPORTED = 16418 => "CHILDLESS_IKEV2_SUPPORTED",
        /// INTERMEDIATE_EXCHANGE_SUPPORTED (RFC 9242).
        INTERMEDIATE_EXCHANGE_SUPPORTED = 16438 => "INTERMEDIATE_EXCHANGE_SUPPORTED",
    }
}

impl NotifyType {
    /// Error types are below 16384 (RFC 7296 §3.10.1).
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }
}

registry! {
    /// Identification types (RFC 7296 §3.5).
    IdType(u8) {
        /// ID_IPV4_ADDR.
        IPV4_ADDR = 1 => "ID_IPV4_ADDR",
        /// ID_FQDN.
        FQDN = 2 => "ID_FQDN",
        /// ID_RFC822_ADDR.
        RFC822_ADDR = 3 => "ID_RFC822_ADDR",
        /// ID_IPV6_ADDR.
        IPV6_ADDR = 5 => "ID_IPV6_ADDR",
        /// ID_DER_ASN1_DN.
        DER_ASN1_DN = 9 => "ID_DER_ASN1_DN",
        /// ID_DER_ASN1_GN.
        DER_ASN1_GN = 10 => "ID_DER_ASN1_GN",
        /// ID_KEY_ID.
        KEY_ID = 11 => "ID_KEY_ID",
    }
}

registry! {
    /// Authentication methods (RFC 7296 §3.8, RFC 7427).
    AuthMethod(u8) {
        /// RSA Digital Signature.
        RSA_SIG = 1 => "RSA_SIG",
        /// Shared Key Message Integrity Code.
        PSK = 2 => "PSK",
        /// DSS Digital Signature.
        DSS_SIG = 3 => "DSS_SIG",
        /// ECDSA with SHA-256 on P-256 (RFC 4754).
        ECDSA_256 = 9 => "ECDSA_256",
        /// ECDSA with SHA-384 on P-384.
        ECDSA_384 = 10 => "ECDSA_384",
        /// ECDSA with SHA-512 on P-521.
        ECDSA_521 = 11 => "ECDSA_521",
        /// Digital Signature (RFC 7427).
        DIGITAL_SIGNATURE = 14 => "DIGITAL_SIGNATURE",
    }
}

registry! {
    /// Certificate encodings (RFC 7296 §3.6).
    CertEncoding(u8) {
        /// X.509 Certificate - Signature.
        X509_SIGNATURE = 4 => "X509_SIGNATURE",
        /// Certificate Revocation List.
        CRL = 7 => "CRL",
        /// Raw RSA Key.
        RAW_RSA = 11 => "RAW_RSA",
        /// Hash and URL of X.509 certificate.
        HASH_URL_X509 = 12 => "HASH_URL_X509",
        /// Raw Public Key (RFC 7670).
        RAW_PUBLIC_KEY = 15 => "RAW_PUBLIC_KEY",
    }
}

registry! {
    /// Traffic selector types (RFC 7296 §3.13.1).
    TsType(u8) {
        /// TS_IPV4_ADDR_RANGE.
        IPV4_ADDR_RANGE = 7 => "TS_IPV4_ADDR_RANGE",
        /// TS_IPV6_ADDR_RANGE.
        IPV6_ADDR_RANGE = 8 => "TS_IPV6_ADDR_RANGE",
    }
}

registry! {
    /// Configuration payload types (RFC 7296 §3.15).
    CfgType(u8) {
        /// CFG_REQUEST.
        REQUEST = 1 => "CFG_REQUEST",
        /// CFG_REPLY.
        REPLY = 2 => "CFG_REPLY",
        /// CFG_SET.
        SET = 3 => "CFG_SET",
        /// CFG_ACK.
        ACK = 4 => "CFG_ACK",
    }
}
