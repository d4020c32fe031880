package explain

import "regexp"

// The patterns of BuildKit's SecretsUsedInArgOrEnv check: a name is a
// secret's when one of its _-separated words is a secret word, unless one
// is "public".
var (
	secretWords = regexp.MustCompile(`(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)`)
	publicWords = regexp.MustCompile(`(?i)(?:_|^)(?:public)(?:_|$)`)
)

// IsSecretName reports whether an ARG or ENV name looks like it holds a
// secret (API_TOKEN, DB_PASSWORD, aws_secret_key), as BuildKit's check
// says; explain never shows such a variable's value, nor a value that
// holds it (secretValues).
func IsSecretName(name string) bool {
	return secretWords.MatchString(name) && !publicWords.MatchString(name)
}
