//! What a test can make the Azure fake do instead of its normal answer: refuse a call the way
//! Azure refuses it, accept it and let its long-running operation end `Failed`, or act on it
//! and lose the reply. Also the record of every call, for counting and asserting.

use serde_json::Value;

/// An error Azure answers with. Its HTTP status and code are Azure's; the message is Azure's
/// wording, filled in from the refused request (resource id, location, VM size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureError {
    /// The VM size is restricted in the location (409).
    SkuNotAvailable,
    /// The vCPU quota of the size's family would be exceeded (409, the deployment code).
    QuotaExceeded,
    /// The same quota refusal as the compute resource provider words it (409).
    OperationNotAllowed,
    /// No capacity for the size in the region; reported by the operation, which ends `Failed`.
    AllocationFailed,
    /// No capacity for the size in the zone; reported by the operation.
    ZonalAllocationFailed,
    /// The placement constraints cannot be met; reported by the operation.
    OverconstrainedAllocationRequest,
    /// The size is not offered to this subscription in the location (409).
    NotAvailableForSubscription,
    /// Resource Manager's subscription throttling (429 with `Retry-After`).
    Throttled,
    /// Resource Manager's internal error (500).
    InternalServerError,
    /// Any other error: status, code and message as given.
    Other {
        status: u16,
        code: String,
        message: String,
    },
}

/// What an error message is filled in from.
#[derive(Debug, Default)]
pub(super) struct ErrorContext {
    pub method: String,
    pub resource_id: String,
    pub location: String,
    pub vm_size: String,
    /// The size's quota family and vCPUs, when the size is in the catalogue.
    pub family: Option<(String, u32)>,
}

impl AzureError {
    /// Azure's error code.
    pub fn code(&self) -> &str {
        match self {
            Self::SkuNotAvailable => "SkuNotAvailable",
            Self::QuotaExceeded => "QuotaExceeded",
            Self::OperationNotAllowed => "OperationNotAllowed",
            Self::AllocationFailed => "AllocationFailed",
            Self::ZonalAllocationFailed => "ZonalAllocationFailed",
            Self::OverconstrainedAllocationRequest => "OverconstrainedAllocationRequest",
            Self::NotAvailableForSubscription => "NotAvailableForSubscription",
            Self::Throttled => "SubscriptionRequestsThrottled",
            Self::InternalServerError => "InternalServerError",
            Self::Other { code, .. } => code,
        }
    }

    /// The HTTP status of a synchronous refusal.
    pub fn status(&self) -> u16 {
        match self {
            Self::Throttled => 429,
            Self::InternalServerError => 500,
            Self::Other { status, .. } => *status,
            _ => 409,
        }
    }

    /// Whether Azure reports this error through the long-running operation rather than in the
    /// answer to the request: allocation happens after the VM was accepted.
    pub fn is_allocation_failure(&self) -> bool {
        matches!(
            self,
            Self::AllocationFailed
                | Self::ZonalAllocationFailed
                | Self::OverconstrainedAllocationRequest
        )
    }

    pub(super) fn message(&self, ctx: &ErrorContext) -> String {
        let quota = || {
            let (family, vcpus) = ctx
                .family
                .clone()
                .unwrap_or_else(|| ("Total Regional".to_owned(), 2));
            format!(
                "Operation could not be completed as it results in exceeding approved {family} \
                 Cores quota. Additional details - Deployment Model: Resource Manager, Location: \
                 {}, Current Limit: 10, Current Usage: 8, Additional Required: {vcpus}, (Minimum) \
                 New Limit Required: {}. Submit a request for Quota increase at \
                 https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView \
                 by specifying parameters listed in the 'Details' section for deployment to succeed. \
                 Please read more about quota limits at \
                 https://docs.microsoft.com/en-us/azure/azure-supportability/per-vm-quota-requests",
                ctx.location,
                8 + vcpus
            )
        };
        match self {
            Self::SkuNotAvailable => format!(
                "The requested size for resource '{}' is currently not available in location \
                 '{}' zones '' for subscription '{}'. Please try another size or deploy to a \
                 different location or zones. See https://aka.ms/azureskunotavailable for details.",
                ctx.resource_id,
                ctx.location,
                super::SUBSCRIPTION_ID
            ),
            Self::QuotaExceeded | Self::OperationNotAllowed => quota(),
            Self::AllocationFailed => "Allocation failed. We do not have sufficient capacity for \
                the requested VM size in this region. Read more about improving likelihood of \
                allocation success at http://aka.ms/allocation-guidance"
                .to_owned(),
            Self::ZonalAllocationFailed => "Allocation failed. We do not have sufficient capacity \
                for the requested VM size in this zone. Read more about improving likelihood of \
                allocation success at http://aka.ms/allocation-guidance"
                .to_owned(),
            Self::OverconstrainedAllocationRequest => "Allocation failed. VM(s) with the \
                following constraints cannot be allocated, because the condition is too \
                restrictive. Please remove some constraints and try again. Constraints applied \
                are:\n  - VM Size\n  - Location\n"
                .to_owned(),
            Self::NotAvailableForSubscription => format!(
                "The requested VM size {} is not available for subscription '{}' in location \
                 '{}'. See https://aka.ms/azureskunotavailable for details.",
                ctx.vm_size,
                super::SUBSCRIPTION_ID,
                ctx.location
            ),
            Self::Throttled => {
                let kind = match ctx.method.as_str() {
                    "GET" | "HEAD" => "read",
                    "DELETE" => "delete",
                    _ => "write",
                };
                format!(
                    "Number of '{kind}' requests for subscription '{}' actor '{}' exceeded. \
                     Please try again after '1' seconds after additional tokens are available. \
                     Refer to https://aka.ms/arm-throttling for additional information.",
                    super::SUBSCRIPTION_ID,
                    super::CLIENT_ID
                )
            }
            Self::InternalServerError => format!(
                "Encountered internal server error. Diagnostic information: timestamp '{}', \
                 subscription id '{}', tracking id '{}', request correlation id '{}'.",
                super::state::timestamp(),
                super::SUBSCRIPTION_ID,
                uuid::Uuid::new_v4(),
                uuid::Uuid::new_v4()
            ),
            Self::Other { message, .. } => message.clone(),
        }
    }
}

/// What a fault does to a matching call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer at once with the error; nothing is created or changed.
    Refuse(AzureError),
    /// Accept the call as usual; its long-running operation then ends `Failed` with the error
    /// and the resource's `provisioningState` becomes `Failed`. On a call that starts no
    /// operation (a `GET`), the same as [`Effect::Refuse`].
    FailOperation(AzureError),
    /// Act on the call, then close the connection without answering.
    DropReply,
}

/// A fault for the next `times` calls of a route (see [`super::FakeAzure`] for route names),
/// optionally only those whose JSON body has a value at a pointer, or that name one resource.
#[derive(Debug, Clone)]
pub struct Fault {
    route: String,
    when: Option<(String, String)>,
    name: Option<String>,
    times: usize,
    effect: Effect,
}

impl Fault {
    /// Refuse the next call of `route` the way Azure refuses with `error`: allocation failures
    /// ([`AzureError::is_allocation_failure`]) as an accepted call whose operation ends
    /// `Failed`, every other error at once.
    pub fn refuse(route: &str, error: AzureError) -> Self {
        let effect = if error.is_allocation_failure() {
            Effect::FailOperation(error)
        } else {
            Effect::Refuse(error)
        };
        Self::new(route, effect)
    }

    /// Accept the next call of `route`, then end its long-running operation `Failed` with
    /// `error`, whatever the error.
    pub fn fail_operation(route: &str, error: AzureError) -> Self {
        Self::new(route, Effect::FailOperation(error))
    }

    /// Act on the next call of `route`, then close the connection without answering.
    pub fn drop_reply(route: &str) -> Self {
        Self::new(route, Effect::DropReply)
    }

    fn new(route: &str, effect: Effect) -> Self {
        Self {
            route: route.to_owned(),
            when: None,
            name: None,
            times: 1,
            effect,
        }
    }

    /// Only calls whose JSON body has `value` at the JSON pointer `pointer`
    /// (`/properties/hardwareProfile/vmSize`, `/properties/priority`); strings compare
    /// without regard to case, as Azure compares sizes and enums.
    #[must_use]
    pub fn when(mut self, pointer: &str, value: &str) -> Self {
        self.when = Some((pointer.to_owned(), value.to_owned()));
        self
    }

    /// Only calls addressed to the resource called `name` (the path's last segment).
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// The next `n` matching calls instead of one.
    #[must_use]
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    pub(super) fn spent(&self) -> bool {
        self.times == 0
    }

    /// Uses the fault up on `call` if it matches, returning its effect.
    pub(super) fn take(&mut self, call: &Call) -> Option<Effect> {
        let matches = self.times > 0
            && self.route.eq_ignore_ascii_case(&call.route)
            && self
                .name
                .as_ref()
                .is_none_or(|n| n.eq_ignore_ascii_case(call.resource_name()))
            && self
                .when
                .as_ref()
                .is_none_or(|(pointer, value)| json_matches(call.body.pointer(pointer), value));
        if !matches {
            return None;
        }
        self.times -= 1;
        Some(self.effect.clone())
    }
}

fn json_matches(found: Option<&Value>, expected: &str) -> bool {
    match found {
        Some(Value::String(s)) => s.eq_ignore_ascii_case(expected),
        Some(other) => *other == serde_json::from_str::<Value>(expected).unwrap_or(Value::Null),
        None => false,
    }
}

/// One request that reached the fake, answered, refused or dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    /// The path as sent (ARM paths keep the client's casing).
    pub path: String,
    /// The query string's pairs, in the order sent.
    pub query: Vec<(String, String)>,
    /// The route the fake served it as (`PUT virtualMachines`, `GET operations`, …).
    pub route: String,
    /// The JSON body (`Null` for none; the token endpoint's form body is not kept, as it
    /// holds the client secret).
    pub body: Value,
}

impl Call {
    /// The value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path's last segment: the resource's name on calls addressed to one resource.
    pub fn resource_name(&self) -> &str {
        self.path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
    }
}
