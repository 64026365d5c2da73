//! Opening the store a location lives in, from [`StoreCredentials`], and caching it per
//! (scheme, account, bucket). This is where a connection's fields get their meaning for each
//! store (the mapping documented in the crate's docs); nothing here moves data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;

use crate::credentials::StoreCredentials;
use crate::error::{ArtifactError, StoreCause};
use crate::options::TransferOptions;
use crate::uri::{Kind, Remote};

/// Which store a remote location lives in: its kind, account and bucket.
type StoreKey = (Kind, Option<String>, String);

/// Opened stores, shared by clones of one [`crate::Artifacts`].
pub(crate) struct Stores {
    credentials: StoreCredentials,
    options: TransferOptions,
    secrets: Vec<String>,
    local: Arc<dyn ObjectStore>,
    remote: Mutex<HashMap<StoreKey, Arc<dyn ObjectStore>>>,
}

impl Stores {
    /// Stores opened with `credentials` and `options`' retry policy.
    pub fn new(credentials: StoreCredentials, options: TransferOptions) -> Self {
        let secrets = credentials.secrets();
        Self {
            credentials,
            options,
            secrets,
            local: Arc::new(LocalFileSystem::new()),
            remote: Mutex::new(HashMap::new()),
        }
    }

    /// The credentials stores are opened with.
    pub fn credentials(&self) -> &StoreCredentials {
        &self.credentials
    }

    /// The transfer options.
    pub fn options(&self) -> &TransferOptions {
        &self.options
    }

    /// Every value to mask in error texts.
    pub fn secrets(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }

    /// The local file system (rooted at `/`).
    pub fn local(&self) -> Arc<dyn ObjectStore> {
        self.local.clone()
    }

    /// The store holding `remote`'s bucket, opened on first use.
    pub fn remote(
        &self,
        remote: &Remote,
        uri: &str,
    ) -> Result<Arc<dyn ObjectStore>, ArtifactError> {
        let key = (remote.kind, remote.account.clone(), remote.bucket.clone());
        if let Some(store) = self.cached().get(&key) {
            return Ok(store.clone());
        }
        let store = self.open(remote).map_err(|source| ArtifactError::Setup {
            uri: uri.to_owned(),
            source,
        })?;
        Ok(self.cached().entry(key).or_insert(store).clone())
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<StoreKey, Arc<dyn ObjectStore>>> {
        // A panic while holding this lock cannot leave the map half-updated: take it anyway.
        self.remote
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self, remote: &Remote) -> Result<Arc<dyn ObjectStore>, StoreCause> {
        let secrets = self.secrets();
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match remote.kind {
            Kind::S3 => self.s3(remote).build().map(|s| Arc::new(s) as _),
            Kind::Oss => self.oss(remote)?.build().map(|s| Arc::new(s) as _),
            Kind::Gcs => self.gcs(remote).build().map(|s| Arc::new(s) as _),
            Kind::Azure => self.azure(remote).build().map(|s| Arc::new(s) as _),
        };
        built.map_err(|e| StoreCause::redacted(&e, &secrets))
    }

    fn client_options(&self, endpoint: Option<&str>) -> object_store::ClientOptions {
        object_store::ClientOptions::new()
            .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
            .with_connect_timeout(std::time::Duration::from_secs(10))
    }

    /// The access key pair and session token of an S3-style connection.
    fn aws_keys(&self, mut builder: AmazonS3Builder) -> AmazonS3Builder {
        let c = &self.credentials;
        if let Some(id) = c.first(&["login", "aws_access_key_id"]) {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = c.first(&["password", "aws_secret_access_key"]) {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = c.first(&["aws_session_token", "session_token"]) {
            builder = builder.with_token(token);
        }
        builder
    }

    /// `endpoint_url`, else `host` (https unless it says otherwise).
    fn endpoint(&self) -> Option<String> {
        let c = &self.credentials;
        c.get("endpoint_url").map(str::to_owned).or_else(|| {
            c.get("host").map(|host| {
                if host.contains("://") {
                    host.to_owned()
                } else {
                    format!("https://{host}")
                }
            })
        })
    }

    fn s3(&self, remote: &Remote) -> AmazonS3Builder {
        let c = &self.credentials;
        let mut builder = self
            .aws_keys(AmazonS3Builder::from_env())
            .with_bucket_name(&remote.bucket)
            .with_retry(self.options.retry_config());
        if let Some(region) = c.first(&["region_name", "region"]) {
            builder = builder.with_region(region);
        }
        let endpoint = self.endpoint();
        if let Some(endpoint) = &endpoint {
            // S3-compatible services (MinIO, Ceph, moto) are addressed path-style.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        builder.with_client_options(self.client_options(endpoint.as_deref()))
    }

    /// OSS through its S3-compatible endpoint, `https://<bucket>.s3.oss-<region>.aliyuncs.com`
    /// (virtual-hosted, as OSS requires); an explicit endpoint wins.
    fn oss(&self, remote: &Remote) -> Result<AmazonS3Builder, StoreCause> {
        let c = &self.credentials;
        let region = c
            .first(&["region_name", "region"])
            .map(str::to_owned)
            .or_else(|| std::env::var("OSS_REGION").ok().filter(|r| !r.is_empty()))
            .map(|r| r.trim_start_matches("oss-").to_owned());
        let mut builder = self.aws_keys(AmazonS3Builder::new());
        if c.first(&["login", "aws_access_key_id"]).is_none()
            && let (Ok(id), Ok(secret)) = (
                std::env::var("OSS_ACCESS_KEY_ID"),
                std::env::var("OSS_ACCESS_KEY_SECRET"),
            )
        {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let endpoint = match (self.endpoint(), &region) {
            (Some(endpoint), _) => endpoint,
            (None, Some(region)) => format!("https://s3.oss-{region}.aliyuncs.com"),
            (None, None) => {
                return Err(StoreCause::plain(
                    "oss:// needs the bucket's region: set region_name in the connection (cn-hangzhou...) or OSS_REGION",
                ));
            }
        };
        let bucket_endpoint = virtual_hosted(&endpoint, &remote.bucket);
        let builder = builder
            .with_bucket_name(&remote.bucket)
            .with_region(region.unwrap_or_else(|| "us-east-1".to_owned()))
            .with_retry(self.options.retry_config())
            .with_allow_http(endpoint.starts_with("http://"))
            .with_client_options(self.client_options(Some(&endpoint)));
        Ok(match bucket_endpoint {
            Some(url) => builder
                .with_endpoint(url)
                .with_virtual_hosted_style_request(true),
            None => builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false),
        })
    }

    fn gcs(&self, remote: &Remote) -> GoogleCloudStorageBuilder {
        let c = &self.credentials;
        let mut builder = GoogleCloudStorageBuilder::from_env()
            .with_bucket_name(&remote.bucket)
            .with_retry(self.options.retry_config())
            .with_client_options(self.client_options(None));
        if let Some(json) = c.first(&["keyfile_dict", "extra__google_cloud_platform__keyfile_dict"])
        {
            builder = builder.with_service_account_key(json);
        } else if let Some(path) = c.first(&["key_path", "extra__google_cloud_platform__key_path"])
        {
            builder = builder.with_service_account_path(path);
        }
        builder
    }

    fn azure(&self, remote: &Remote) -> MicrosoftAzureBuilder {
        let c = &self.credentials;
        let mut builder = MicrosoftAzureBuilder::from_env()
            .with_container_name(&remote.bucket)
            .with_retry(self.options.retry_config());
        if let Some(account) = remote.account.as_deref().or_else(|| c.get("login")) {
            builder = builder.with_account(account);
        }
        if let Some(key) = c.get("password") {
            builder = builder.with_access_key(key);
        }
        if let Some(sas) = c.first(&["sas_token", "sas_key"]) {
            builder = builder.with_config(AzureConfigKey::SasKey, sas.trim_start_matches('?'));
        }
        let endpoint = c.get("endpoint_url").map(str::to_owned);
        if let Some(endpoint) = &endpoint {
            builder = builder
                .with_endpoint(endpoint.clone())
                .with_allow_http(endpoint.starts_with("http://"));
        }
        builder.with_client_options(self.client_options(endpoint.as_deref()))
    }
}

/// `endpoint` with `bucket` as the first label of its host, for virtual-hosted requests; `None`
/// when the host is an IP address or `localhost` (a test server: path-style then).
fn virtual_hosted(endpoint: &str, bucket: &str) -> Option<String> {
    let url = url::Url::parse(endpoint).ok()?;
    match url.host()? {
        url::Host::Domain(host) if host != "localhost" => {
            let mut with_bucket = url.clone();
            with_bucket
                .set_host(Some(&format!("{bucket}.{host}")))
                .ok()?;
            Some(with_bucket.as_str().trim_end_matches('/').to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oss_endpoints_put_the_bucket_in_the_host() {
        assert_eq!(
            virtual_hosted("https://s3.oss-cn-hangzhou.aliyuncs.com", "data").as_deref(),
            Some("https://data.s3.oss-cn-hangzhou.aliyuncs.com")
        );
        assert_eq!(virtual_hosted("http://127.0.0.1:9000", "data"), None);
        assert_eq!(virtual_hosted("http://localhost:9000", "data"), None);
    }
}
