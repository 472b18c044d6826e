//! Seeding and checking data through an independent S3 client.

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::error::{HarnessError, Result};
use crate::minio::MinioServer;
use crate::shards::{shard_key, text_shard};

/// One object written by [`MinioServer::seed_text_shards`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededShard {
    /// The object key.
    pub key: String,
    /// The ETag MinIO reported for the write, quotes included.
    pub etag: String,
    /// The object's content.
    pub body: Bytes,
}

/// Turns an SDK error into a [`HarnessError::S3`] naming the operation.
fn s3_error<E>(operation: String) -> impl FnOnce(E) -> HarnessError
where
    E: std::error::Error,
{
    move |error| HarnessError::S3 {
        operation,
        message: DisplayErrorContext(&error).to_string(),
    }
}

impl MinioServer {
    /// Creates `bucket`.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.s3_client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(s3_error(format!("CreateBucket {bucket}")))?;
        Ok(())
    }

    /// Writes `body` to `s3://bucket/key` and returns the new ETag (quotes
    /// included, as S3 reports it).
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes>,
    ) -> Result<String> {
        let output = self
            .s3_client()
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.into()))
            .send()
            .await
            .map_err(s3_error(format!("PutObject s3://{bucket}/{key}")))?;
        Ok(output.e_tag.unwrap_or_default())
    }

    /// The whole content of `s3://bucket/key`.
    pub async fn get_object_bytes(&self, bucket: &str, key: &str) -> Result<Bytes> {
        let operation = format!("GetObject s3://{bucket}/{key}");
        let output = self
            .s3_client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_error(operation.clone()))?;
        let body = output.body.collect().await.map_err(s3_error(operation))?;
        Ok(body.into_bytes())
    }

    /// The current ETag of `s3://bucket/key` (quotes included).
    pub async fn object_etag(&self, bucket: &str, key: &str) -> Result<String> {
        let output = self
            .s3_client()
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_error(format!("HeadObject s3://{bucket}/{key}")))?;
        Ok(output.e_tag.unwrap_or_default())
    }

    /// Every key in `bucket` starting with `prefix`, in S3's (lexicographic)
    /// order, across as many list pages as it takes.
    pub async fn list_keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let operation = format!("ListObjectsV2 s3://{bucket}/{prefix}");
        let mut pages = self
            .s3_client()
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(s3_error(operation.clone()))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|object| object.key.clone()),
            );
        }
        Ok(keys)
    }

    /// Writes `count` text shards of exactly `size` bytes each to
    /// `s3://bucket/{prefix}part-NNNNN.txt` (see [`shard_key`]), with content
    /// [`text_shard`]`(index, size)`, and returns them in index order.
    pub async fn seed_text_shards(
        &self,
        bucket: &str,
        prefix: &str,
        count: usize,
        size: usize,
    ) -> Result<Vec<SeededShard>> {
        let mut shards = Vec::with_capacity(count);
        for index in 0..count {
            let key = shard_key(prefix, index);
            let body = Bytes::from(text_shard(index, size));
            let etag = self.put_object(bucket, &key, body.clone()).await?;
            shards.push(SeededShard { key, etag, body });
        }
        Ok(shards)
    }
}
