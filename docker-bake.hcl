# docker buildx bake: the models image and the app image on it, in one invocation.
#
#   docker buildx bake                                   # modelbake/models:latest + modelbake/app:latest
#   BASE_IMAGE=modelbake/python-base:3.11-bookworm CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
#   MIRRORS_FILE=models.toml WHEELHOUSE=/opt/wheels docker buildx bake
#
# The app's `models` stage is the models target itself (contexts = { models = "target:models" }), so one bake
# builds both, and the app image stands on the models image's layers. Secrets are optional: without CA_BUNDLE,
# MIRRORS_FILE or HF_TOKEN_FILE the steps use the system CA bundle, the official hubs and no token.
# A mirror on 127.0.0.1 needs NETWORK=host, which bake applies only from buildx 0.17 on (older bake ignores
# `network` silently: checked with 0.13, where the fetch steps then get "connection refused"); there, use
# build.py or plain `docker build --network host`, or a mirror the build's default network reaches.

variable "BASE_IMAGE" { default = "python:3.11-slim-bookworm" }
variable "MODELS_TAG" { default = "modelbake/models:latest" }
variable "APP_TAG" { default = "modelbake/app:latest" }
variable "PROFILE" { default = "" }
variable "CA_BUNDLE" { default = "" }
variable "MIRRORS_FILE" { default = "" }
variable "HF_TOKEN_FILE" { default = "" }
variable "WHEELHOUSE" { default = "" }
variable "NETWORK" { default = "default" }

# Both targets: the models image is tagged too (a target only another target's context names is built, not exported).
group "default" {
  targets = ["models", "app"]
}

target "models" {
  dockerfile = "Dockerfile.models"
  target     = "models"
  tags       = [MODELS_TAG]
  args       = { BASE_IMAGE = BASE_IMAGE }
  network    = NETWORK
  secret = concat(
    CA_BUNDLE != "" ? ["id=ca,src=${CA_BUNDLE}"] : [],
    MIRRORS_FILE != "" ? ["id=mirrors,src=${MIRRORS_FILE}"] : [],
    HF_TOKEN_FILE != "" ? ["id=hf_token,src=${HF_TOKEN_FILE}"] : [],
  )
}

target "app" {
  dockerfile = "Dockerfile"
  target     = "app"
  tags       = [APP_TAG]
  args       = { BASE_IMAGE = BASE_IMAGE, MODELBAKE_PROFILE = PROFILE }
  contexts = merge(
    { models = "target:models" },
    WHEELHOUSE != "" ? { wheels = WHEELHOUSE } : {},
  )
  network = NETWORK
  secret  = CA_BUNDLE != "" ? ["id=ca,src=${CA_BUNDLE}"] : []
}
