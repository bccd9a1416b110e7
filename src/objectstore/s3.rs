//! S3 (and S3-compatible servers) as an object store, with aws-sdk-s3 on a private tokio runtime.

use super::{Object, ObjectMeta, ObjectStore, PutOutcome, S3Options};
use crate::error::StoreError;

pub struct S3Store {
    bucket: String,
    prefix: String,
}

impl S3Store {
    pub fn connect(bucket: String, prefix: String, options: &S3Options) -> Result<S3Store, StoreError> {
        let _ = options;
        let _ = S3Store { bucket, prefix };
        unimplemented!()
    }
}

impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
    fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let _ = key;
        unimplemented!()
    }
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let _ = key;
        unimplemented!()
    }
    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        let _ = (key, body);
        unimplemented!()
    }
    fn put_if_absent(&self, key: &str, body: &[u8]) -> Result<PutOutcome, StoreError> {
        let _ = (key, body);
        unimplemented!()
    }
    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<ObjectMeta>, StoreError> {
        let _ = (prefix, start_after, limit);
        unimplemented!()
    }
}
