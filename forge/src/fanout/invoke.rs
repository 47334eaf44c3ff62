//! One invocation of the function, and how its failures are classified: the
//! [`Invoke`] trait (the AWS SDK's client, [`AwsInvoker`], or a test's fake)
//! and [`invoke_with_retries`], which retries transient failures with the
//! suite engine's [`Backoff`].
//!
//! Transient (retried): the function was not run. Lambda throttled the
//! request (`TooManyRequestsException`, its `retryAfterSeconds` honoured),
//! answered a 5xx service error (`ServiceException`, `ResourceNotReady`,
//! `EC2Throttled`...), or the request could not be sent (connection refused
//! or reset before an answer). Everything else is final, because the
//! function may have run and sent the chunk's turns already: a function
//! error (`Unhandled`, a timeout), an operation timeout, an answer that is
//! not the expected JSON. What stays failed becomes `[ERROR]` batches
//! naming the invocation's request id.

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::policy::Backoff;

/// Retries of a transient invocation failure before it is final.
pub const MAX_RETRIES: u32 = 6;

/// The wait for one invocation's answer: Lambda's 15 minutes, and a margin.
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(15 * 60 + 30);

/// What an invocation that got an answer came back with.
#[derive(Debug, Clone, PartialEq)]
pub struct Invoked {
    /// The invocation's request id (`x-amzn-RequestId`), when known.
    pub request_id: Option<String>,
    /// Lambda's `FunctionError` (`Unhandled`, ...): the function failed.
    pub function_error: Option<String>,
    /// The function's answer (or its error document).
    pub body: Vec<u8>,
}

/// An invocation that got no answer from the function.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The request id, when Lambda gave one.
    pub request_id: Option<String>,
    /// What went wrong, without secrets.
    pub message: String,
    /// Whether the function was not run, so a retry cannot run it twice.
    pub transient: bool,
    /// How long Lambda asked us to wait before a retry.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A final failure.
    pub fn permanent(request_id: Option<String>, message: impl Into<String>) -> Self {
        Failure {
            request_id,
            message: message.into(),
            transient: false,
            retry_after: None,
        }
    }
}

/// Invokes the function synchronously with a payload.
#[async_trait]
pub trait Invoke: Send + Sync {
    /// One invocation with `payload` (JSON bytes).
    async fn invoke(&self, payload: Vec<u8>) -> Result<Invoked, Failure>;
}

/// The outcome of [`invoke_with_retries`]: the answer or the last failure,
/// and how many attempts it took.
pub(crate) struct Attempted {
    pub result: Result<Invoked, Failure>,
    pub attempts: u32,
}

/// Invokes until an answer or a final failure: transient failures are
/// retried up to [`MAX_RETRIES`] times after `backoff`'s delay; once
/// `cancel` fires, no further attempt is made.
pub(crate) async fn invoke_with_retries(
    invoker: &dyn Invoke,
    payload: Vec<u8>,
    backoff: &Backoff,
    cancel: &CancellationToken,
) -> Attempted {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let failure = match invoker.invoke(payload.clone()).await {
            Ok(invoked) => {
                return Attempted {
                    result: Ok(invoked),
                    attempts,
                }
            }
            Err(failure) => failure,
        };
        if !failure.transient || attempts > MAX_RETRIES {
            return Attempted {
                result: Err(failure),
                attempts,
            };
        }
        tracing::debug!(attempt = attempts, message = %failure.message, "retrying the invocation");
        let delay = backoff.delay(attempts, failure.retry_after);
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                let message = format!("{} (run interrupted before a retry)", failure.message);
                return Attempted { result: Err(Failure { message, ..failure }), attempts };
            }
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(feature = "lambda-client")]
pub use aws::AwsInvoker;

#[cfg(feature = "lambda-client")]
mod aws {
    use super::{Failure, Invoke, Invoked, INVOCATION_TIMEOUT};
    use async_trait::async_trait;
    use aws_sdk_lambda::error::SdkError;
    use aws_sdk_lambda::operation::invoke::InvokeError;
    use aws_sdk_lambda::operation::RequestId;
    use aws_sdk_lambda::primitives::Blob;
    use std::time::Duration;

    /// Lambda's Invoke API through the official AWS SDK for Rust.
    pub struct AwsInvoker {
        client: aws_sdk_lambda::Client,
        function: String,
    }

    impl AwsInvoker {
        /// A client of `function` (a name, ARN or `name:alias`) with the
        /// standard credential chain and region (environment, profile, web
        /// identity, container or instance credentials), the endpoint
        /// `endpoint` or else `AWS_ENDPOINT_URL_LAMBDA` / `AWS_ENDPOINT_URL`.
        /// The SDK's own retries are off: [`super::invoke_with_retries`]
        /// decides.
        pub async fn connect(
            function: &str,
            endpoint: Option<&str>,
        ) -> Result<Self, super::super::FanoutError> {
            use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
            let http = aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https();
            let timeouts = aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(INVOCATION_TIMEOUT)
                .build();
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(http)
                .timeout_config(timeouts)
                .retry_config(aws_config::retry::RetryConfig::disabled());
            if let Some(endpoint) = endpoint {
                loader = loader.endpoint_url(endpoint);
            }
            let config = loader.load().await;
            if config.region().is_none() {
                return Err(super::super::FanoutError::NoRegion);
            }
            Ok(AwsInvoker {
                client: aws_sdk_lambda::Client::new(&config),
                function: function.to_owned(),
            })
        }
    }

    #[async_trait]
    impl Invoke for AwsInvoker {
        async fn invoke(&self, payload: Vec<u8>) -> Result<Invoked, Failure> {
            let sent = self
                .client
                .invoke()
                .function_name(&self.function)
                .payload(Blob::new(payload))
                .send()
                .await;
            match sent {
                Ok(output) => Ok(Invoked {
                    request_id: output.request_id().map(str::to_owned),
                    function_error: output.function_error().map(str::to_owned),
                    body: output
                        .payload()
                        .map(|b| b.as_ref().to_vec())
                        .unwrap_or_default(),
                }),
                Err(error) => Err(classify(&error)),
            }
        }
    }

    /// What went wrong: Lambda's error code and message, or its HTTP
    /// status; the SDK's account of a request that got no answer.
    fn describe(
        error: &SdkError<InvokeError, aws_sdk_lambda::config::http::HttpResponse>,
    ) -> String {
        use aws_sdk_lambda::error::ProvideErrorMetadata;
        match error {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                match (service.err().code(), service.err().message()) {
                    (Some(code), Some(message)) => format!("{code}: {message} (HTTP {status})"),
                    (Some(code), None) => format!("{code} (HTTP {status})"),
                    _ => format!("Lambda answered HTTP {status}"),
                }
            }
            other => aws_sdk_lambda::error::DisplayErrorContext(other).to_string(),
        }
    }

    /// Whether a failed invocation ran the function, and what to say.
    fn classify(
        error: &SdkError<InvokeError, aws_sdk_lambda::config::http::HttpResponse>,
    ) -> Failure {
        let request_id = error.request_id().map(str::to_owned);
        let mut failure = Failure::permanent(request_id, describe(error));
        match error {
            SdkError::DispatchFailure(dispatch) => {
                // Not sent, or the connection failed before an answer.
                failure.transient = dispatch.is_io() && !dispatch.is_timeout();
            }
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                match service.err() {
                    InvokeError::TooManyRequestsException(throttled) => {
                        failure.transient = true;
                        failure.retry_after = throttled
                            .retry_after_seconds()
                            .and_then(|s| s.trim().parse::<u64>().ok())
                            .map(Duration::from_secs);
                    }
                    InvokeError::ServiceException(_)
                    | InvokeError::ResourceNotReadyException(_)
                    | InvokeError::Ec2ThrottledException(_)
                    | InvokeError::EniLimitReachedException(_)
                    | InvokeError::SubnetIpAddressLimitReachedException(_) => {
                        failure.transient = true
                    }
                    _ => failure.transient = status == 429,
                }
            }
            _ => {}
        }
        failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Fails with each of `failures` in turn, then answers.
    struct Scripted {
        failures: Mutex<Vec<Failure>>,
        calls: Mutex<u32>,
    }

    #[async_trait]
    impl Invoke for Scripted {
        async fn invoke(&self, _payload: Vec<u8>) -> Result<Invoked, Failure> {
            *self.calls.lock().unwrap() += 1;
            match self.failures.lock().unwrap().pop() {
                Some(failure) => Err(failure),
                None => Ok(Invoked {
                    request_id: Some("r-ok".into()),
                    function_error: None,
                    body: b"{}".to_vec(),
                }),
            }
        }
    }

    fn throttled(after: Option<u64>) -> Failure {
        Failure {
            request_id: Some("r-429".into()),
            message: "TooManyRequestsException".into(),
            transient: true,
            retry_after: after.map(Duration::from_secs),
        }
    }

    fn scripted(failures: Vec<Failure>) -> Scripted {
        Scripted {
            failures: Mutex::new(failures),
            calls: Mutex::new(0),
        }
    }

    // Throttling: the emulator never throttles, so only a fake shows it.
    #[tokio::test(start_paused = true)]
    async fn throttled_invocations_are_retried_after_lambdas_delay() {
        let invoker = scripted(vec![throttled(Some(7)), throttled(None)]);
        let start = tokio::time::Instant::now();
        let done = invoke_with_retries(
            &invoker,
            b"{}".to_vec(),
            &Backoff::DEFAULT,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(done.attempts, 3);
        assert_eq!(
            done.result.expect("answered").request_id.as_deref(),
            Some("r-ok")
        );
        // The paused clock: the backoff (>= 125 ms) and Retry-After (7 s) waited.
        assert!(
            start.elapsed() >= Duration::from_millis(7_125),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn final_failures_are_not_retried_and_retries_are_bounded() {
        let invoker = scripted(vec![Failure::permanent(
            Some("r-x".into()),
            "function timed out",
        )]);
        let done = invoke_with_retries(
            &invoker,
            vec![],
            &Backoff::DEFAULT,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(done.attempts, 1);
        assert_eq!(
            done.result.expect_err("failed").request_id.as_deref(),
            Some("r-x")
        );

        let invoker = scripted((0..20).map(|_| throttled(None)).collect());
        let done = invoke_with_retries(
            &invoker,
            vec![],
            &Backoff::DEFAULT,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(done.attempts, MAX_RETRIES + 1);
        assert!(done.result.is_err());
        assert_eq!(*invoker.calls.lock().unwrap(), MAX_RETRIES + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_interruption_ends_the_wait_for_a_retry() {
        let invoker = scripted(vec![throttled(Some(600))]);
        let cancel = CancellationToken::new();
        let run = invoke_with_retries(&invoker, vec![], &Backoff::DEFAULT, &cancel);
        let (done, ()) = tokio::join!(run, async { cancel.cancel() });
        assert_eq!(done.attempts, 1);
        let failure = done.result.expect_err("interrupted");
        assert!(
            failure.message.contains("interrupted before a retry"),
            "{failure:?}"
        );
        assert_eq!(*invoker.calls.lock().unwrap(), 1);
    }
}
