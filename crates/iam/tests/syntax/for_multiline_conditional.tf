# A conditional spread over several lines inside a `for` expression (the shape of
# cloud-foundation-fabric's modules/cloudsql-instance/main.tf).
locals {
  users = {
    for k, v in coalesce(var.users, {}) :
    k =>
    local.is_mysql ?
    {
      name = split("@", k)[0]
      type = try(v.type, "BUILT_IN")
      } : {
      name = k
      type = try(v.type, "BUILT_IN")
    }
  }
  flags = [
    for f in var.flags :
    f.enabled
    ? f.name
    : "off"
    if f != null
  ]
}
