# A conditional chain spread over lines inside a template interpolation.
resource "google_pubsub_subscription" "s" {
  name = "sub-${
    var.tenant == "a" ? "1" :
    var.tenant == "b" ? "2" : "0"
  }-v1"
  topic = "t"
  labels = {
    for k, v in var.labels :
    k => v
    if v != ""
  }
}
