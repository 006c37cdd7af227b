#!/usr/bin/env python3
"""Derive the compact schema of hashicorp/google from the cdktn-provider-google wheel.

Usage: derive_schema.py WHEEL OUT_JSON

The wheel's `_jsii/*.jsii.tgz` holds a `.jsii` JSON assembly describing every resource, data
source and the provider configuration as TypeScript classes. For each one this reads:
  - the Terraform name (the `{@link .../docs/resources/NAME google_NAME}` in the class summary);
  - every config property: its Terraform name (the `#name` anchor of its docs link), whether it
    is optional, its type (primitive, list/map of primitives, or a nested block struct);
  - the computed attributes: the class's read-only getters with no matching config property.

Output (one JSON object, written by the fake provider's `schema` module):
  {"provider_version": "8.7.0", "provider": BLOCK, "resources": {NAME: BLOCK},
   "data_sources": {NAME: BLOCK}}
  BLOCK = {"attributes": [[name, type, mode]], "blocks": [[name, nesting, min_items, max_items, BLOCK]]}
  type  = Terraform's JSON type encoding ("string", ["list", "string"], ["object", {...}], ...)
  mode  = "required" | "optional" | "computed"; optional means optional and computed: the jsii
          cannot tell Optional from Optional+Computed, and an unset optional attribute planned as
          unknown never makes a plan fail on a value the real provider would have filled in.
  nesting = "single" (a struct property, max_items 1 in the SDK) | "list".
Why Python: the standard library reads zip, gzip and tar; this runs once in `./dev setup`.
"""
import io
import json
import re
import sys
import tarfile
import zipfile

ASSEMBLY = "@cdktn/provider-google."
LINK = re.compile(r"\{@link https://registry\.terraform\.io/providers/hashicorp/google/([0-9.]+)/docs(?:/[a-z-]+/[a-z0-9_]+)? ([a-z0-9_]+)\}")
ANCHOR = re.compile(r"#([a-z0-9_]+) ")
# Limit: a few structs are self-referential (the provider unrolls them to a fixed depth); past
# this depth a nested block is served empty and a computed object as "dynamic".
MAX_DEPTH = 10


def snake(camel):
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)


class Deriver:
    def __init__(self, types):
        self.types = types
        self.unknown_shapes = 0
        self.names_without_anchor = 0

    def prim(self, p):
        return {"string": "string", "number": "number", "boolean": "bool", "any": "dynamic", "json": "dynamic", "date": "string"}[p]

    def strip_resolvable(self, ty):
        if "union" in ty:
            rest = [t for t in ty["union"]["types"] if t.get("fqn") != "cdktn.IResolvable"]
            assert len(rest) == 1, ty
            return rest[0]
        return ty

    def config_type(self, ty):
        """Returns ("attr", type) or ("block", nesting, struct_fqn)."""
        ty = self.strip_resolvable(ty)
        if "primitive" in ty:
            return ("attr", self.prim(ty["primitive"]))
        if "collection" in ty:
            kind = ty["collection"]["kind"]
            elem = self.strip_resolvable(ty["collection"]["elementtype"])
            if "fqn" in elem and elem["fqn"].startswith(ASSEMBLY):
                assert kind == "array", ty
                return ("block", "list", elem["fqn"])
            inner = self.config_type(elem)
            assert inner[0] == "attr", ty
            return ("attr", ["list" if kind == "array" else "map", inner[1]])
        fqn = ty["fqn"]
        if fqn.startswith(ASSEMBLY) and self.types[fqn].get("datatype"):
            return ("block", "single", fqn)
        self.unknown_shapes += 1
        return ("attr", "dynamic")

    def getter_type(self, ty, depth):
        if depth >= MAX_DEPTH:
            return "dynamic"
        if ty == {"fqn": "cdktn.IResolvable"}:
            return "bool"  # cdktn types a computed boolean's getter as a bare IResolvable.
        ty = self.strip_resolvable(ty)
        if "primitive" in ty:
            return self.prim(ty["primitive"])
        if "collection" in ty:
            kind = ty["collection"]["kind"]
            return ["list" if kind == "array" else "map", self.getter_type(ty["collection"]["elementtype"], depth + 1)]
        fqn = ty["fqn"]
        simple = {"cdktn.StringMap": ["map", "string"], "cdktn.NumberMap": ["map", "number"],
                  "cdktn.BooleanMap": ["map", "bool"], "cdktn.AnyMap": ["map", "dynamic"],
                  "cdktn.StringListMap": ["map", ["list", "string"]], "cdktn.NumberListMap": ["map", ["list", "number"]],
                  "cdktn.BooleanListMap": ["map", ["list", "bool"]], "cdktn.AnyListMap": ["map", ["list", "dynamic"]],
                  "cdktn.StringMapList": ["list", ["map", "string"]], "cdktn.NumberMapList": ["list", ["map", "number"]],
                  "cdktn.BooleanMapList": ["list", ["map", "bool"]], "cdktn.AnyMapList": ["list", ["map", "dynamic"]]}
        if fqn in simple:
            return simple[fqn]
        if fqn.startswith(ASSEMBLY):
            if fqn.endswith("List") and (fqn[: -len("List")] + "OutputReference") in self.types:
                return ["list", self.object_of(fqn[: -len("List")] + "OutputReference", depth + 1)]
            if fqn.endswith("Map") and (fqn[: -len("Map")] + "OutputReference") in self.types:
                return ["map", self.object_of(fqn[: -len("Map")] + "OutputReference", depth + 1)]
            if fqn.endswith("OutputReference"):
                # A single computed block: a list of one object in SDK providers.
                return ["list", self.object_of(fqn, depth + 1)]
        self.unknown_shapes += 1
        return "dynamic"

    def getters(self, cls_fqn):
        out = []
        for p in self.types.get(cls_fqn, {}).get("properties", []):
            if p.get("static") or not p.get("immutable") or p["name"].endswith("Input"):
                continue
            if p["name"] in ("fqn", "creationStack", "terraformResourceType", "internalValue", "terraformGeneratorMetadata"):
                continue
            out.append(p)
        return out

    def object_of(self, out_ref_fqn, depth):
        attrs = {}
        for g in self.getters(out_ref_fqn):
            attrs[snake(g["name"])] = self.getter_type(g["type"], depth)
        return ["object", attrs]

    def block(self, struct_fqn, getter_cls, depth):
        if depth >= MAX_DEPTH:
            return {"attributes": [], "blocks": []}
        attributes, blocks, config_names = [], [], set()
        for p in self.types[struct_fqn].get("properties", []):
            docs = p.get("docs", {})
            # The link sits in remarks, summary or a custom tag, depending on the docs' shape.
            # A few docs are cut short by a `*/` in the provider's own text: the property name in
            # snake_case is then the Terraform name (that is how cdktn derived it).
            m = ANCHOR.search(json.dumps(docs))
            if m:
                name = m.group(1)
            else:
                name = snake(p["name"])
                self.names_without_anchor += 1
            config_names.add(p["name"])
            optional = bool(p.get("optional"))
            shape = self.config_type(p["type"])
            if shape[0] == "attr":
                attributes.append([name, shape[1], "optional" if optional else "required"])
            else:
                _, nesting, fqn = shape
                child_getter = fqn + "OutputReference"
                blocks.append([name, nesting, 0 if optional else 1, 1 if nesting == "single" else 0,
                               self.block(fqn, child_getter, depth + 1)])
        if getter_cls:
            for g in self.getters(getter_cls):
                if g["name"] in config_names:
                    continue
                attributes.append([snake(g["name"]), self.getter_type(g["type"], depth), "computed"])
        attributes.sort()
        blocks.sort(key=lambda b: b[0])
        return {"attributes": attributes, "blocks": blocks}


def main():
    wheel, out = sys.argv[1], sys.argv[2]
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".jsii.tgz"))
        tgz = z.read(name)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        assembly = json.load(tar.extractfile("package/.jsii"))
    types = assembly["types"]
    d = Deriver(types)
    result = {"provider_version": None, "provider": None, "resources": {}, "data_sources": {}}
    for fqn, cls in sorted(types.items()):
        base = cls.get("base")
        if base not in ("cdktn.TerraformResource", "cdktn.TerraformDataSource", "cdktn.TerraformProvider"):
            continue
        m = LINK.search(cls["docs"]["summary"])
        assert m, fqn
        version, tf_name = m.group(1), m.group(2)
        assert result["provider_version"] in (None, version), (version, fqn)
        result["provider_version"] = version
        config = cls["initializer"]["parameters"][-1]["type"]["fqn"]
        block = d.block(config, None if base == "cdktn.TerraformProvider" else fqn, 0)
        if base == "cdktn.TerraformProvider":
            result["provider"] = block
        elif base == "cdktn.TerraformResource":
            result["resources"][tf_name] = block
        else:
            result["data_sources"][tf_name] = block
    assert result["provider"] is not None
    with open(out, "w") as f:
        json.dump(result, f, separators=(",", ":"), sort_keys=True)
    print(f"derived google {result['provider_version']}: {len(result['resources'])} resources, "
          f"{len(result['data_sources'])} data sources, {d.unknown_shapes} loosely typed (dynamic), "
          f"{d.names_without_anchor} names without a docs anchor")


if __name__ == "__main__":
    main()
