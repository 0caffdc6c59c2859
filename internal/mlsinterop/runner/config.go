// Package runner is a compact reimplementation of the scenario driver of the
// MLS working group's interop test-runner (interop/test-runner/main.go in
// github.com/mlswg/mls-implementations). It parses the scenario config format
// (interop/configs/*.json) and drives one or more MLSClient gRPC endpoints
// through a scenario's steps, performing the same RPCs in the same order and
// the same consistency checks as the upstream runner.
package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
)

// Action is the "action" of a scenario step.
type Action string

// The actions understood by the upstream test-runner.
const (
	ActionCreateGroup                    Action = "createGroup"
	ActionCreateKeyPackage               Action = "createKeyPackage"
	ActionJoinGroup                      Action = "joinGroup"
	ActionExternalJoin                   Action = "externalJoin"
	ActionInstallExternalPSK             Action = "installExternalPSK"
	ActionGroupInfo                      Action = "groupInfo"
	ActionAddProposal                    Action = "addProposal"
	ActionUpdateProposal                 Action = "updateProposal"
	ActionRemoveProposal                 Action = "removeProposal"
	ActionExternalPSKProposal            Action = "externalPSKProposal"
	ActionResumptionPSKProposal          Action = "resumptionPSKProposal"
	ActionGroupContextExtensionsProposal Action = "groupContextExtensionsProposal"
	ActionFullCommit                     Action = "fullCommit"
	ActionCommit                         Action = "commit"
	ActionHandleCommit                   Action = "handleCommit"
	ActionHandlePendingCommit            Action = "handlePendingCommit"
	ActionProtect                        Action = "protect"
	ActionUnprotect                      Action = "unprotect"
	ActionReInit                         Action = "reinit"
	ActionBranch                         Action = "branch"
	ActionNewMemberAddProposal           Action = "newMemberAddProposal"
	ActionAddExternalSigner              Action = "addExternalSigner"
	ActionExternalSignerProposal         Action = "externalSignerProposal"
)

// Actions lists every known action.
var Actions = []Action{
	ActionCreateGroup, ActionCreateKeyPackage, ActionJoinGroup, ActionExternalJoin,
	ActionInstallExternalPSK, ActionGroupInfo, ActionAddProposal, ActionUpdateProposal,
	ActionRemoveProposal, ActionExternalPSKProposal, ActionResumptionPSKProposal,
	ActionGroupContextExtensionsProposal, ActionFullCommit, ActionCommit,
	ActionHandleCommit, ActionHandlePendingCommit, ActionProtect, ActionUnprotect,
	ActionReInit, ActionBranch, ActionNewMemberAddProposal, ActionAddExternalSigner,
	ActionExternalSignerProposal,
}

// Known reports whether a is an action the runner can execute.
func (a Action) Known() bool { return slices.Contains(Actions, a) }

// Step is one scenario step. Actor and Action are lifted out of the JSON
// object; Raw keeps the whole object so that the action-specific parameters
// can be decoded when the step runs (exactly as upstream does).
type Step struct {
	Actor  string
	Action Action
	Raw    json.RawMessage
}

// UnmarshalJSON requires a string "action" and accepts an optional string
// "actor".
func (s *Step) UnmarshalJSON(data []byte) error {
	var head struct {
		Action *string `json:"action"`
		Actor  *string `json:"actor"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return err
	}
	if head.Action == nil {
		return fmt.Errorf("incomplete step: missing action")
	}
	s.Action = Action(*head.Action)
	s.Actor = ""
	if head.Actor != nil {
		s.Actor = *head.Actor
	}
	s.Raw = append(json.RawMessage(nil), data...)
	return nil
}

// MarshalJSON returns the step's original JSON.
func (s Step) MarshalJSON() ([]byte, error) {
	if len(s.Raw) > 0 {
		return s.Raw, nil
	}
	return json.Marshal(map[string]string{"action": string(s.Action), "actor": s.Actor})
}

// Script is an ordered list of steps. Integer parameters such as
// "keyPackage": 1 refer to the output of the step with that (0-based) index.
type Script []Step

// Config is the top-level scenario file: named scripts (and an optional mode,
// "allCombinations" or "random", which selects how upstream assigns clients to
// actors).
type Config struct {
	Mode    string            `json:"mode,omitempty"`
	Scripts map[string]Script `json:"scripts,omitempty"`
}

// ParseConfig parses a scenario config.
func ParseConfig(data []byte) (*Config, error) {
	cfg := new(Config)
	if err := json.Unmarshal(data, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// LoadConfig reads and parses a scenario config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Names returns the script names in sorted order.
func (c *Config) Names() []string {
	names := make([]string, 0, len(c.Scripts))
	for n := range c.Scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Actors returns, sorted, the actors that need a client: every step's
// "actor", plus createGroup "members", externalJoin and newMemberAddProposal
// "joiner" and addExternalSigner "signer" (the same set upstream computes;
// steps without an "actor" contribute nothing).
func (s Script) Actors() []string {
	set := map[string]bool{}
	for _, step := range s {
		if step.Actor == "" {
			continue
		}
		set[step.Actor] = true
		switch step.Action {
		case ActionCreateGroup:
			var p CreateGroupParams
			if json.Unmarshal(step.Raw, &p) == nil {
				for _, m := range p.Members {
					set[m] = true
				}
			}
		case ActionExternalJoin:
			var p ExternalJoinParams
			if json.Unmarshal(step.Raw, &p) == nil {
				set[p.Joiner] = true
			}
		case ActionNewMemberAddProposal:
			var p NewMemberAddProposalParams
			if json.Unmarshal(step.Raw, &p) == nil {
				set[p.Joiner] = true
			}
		case ActionAddExternalSigner:
			var p AddExternalSignerParams
			if json.Unmarshal(step.Raw, &p) == nil {
				set[p.Signer] = true
			}
		}
	}
	actors := make([]string, 0, len(set))
	for a := range set {
		actors = append(actors, a)
	}
	sort.Strings(actors)
	return actors
}

// Extension is a group context / branch / reinit extension as written in the
// configs: {"extension_type": 3, "extension_data": "<base64>"}.
type Extension struct {
	ExtensionType uint32 `json:"extension_type"`
	ExtensionData []byte `json:"extension_data"`
}

// Step parameter types. The JSON names are those of the upstream runner
// (note the mix of camelCase and snake_case, e.g. "force_path" for
// fullCommit/commit/branch but "forcePath" for reinit). encoding/json matches
// names case-insensitively, as upstream does.
type (
	CreateGroupParams struct {
		Members []string `json:"members"`
	}
	JoinGroupParams struct {
		Welcome int `json:"welcome"`
	}
	ExternalJoinParams struct {
		Joiner       string   `json:"joiner"`
		Members      []string `json:"members"`
		ExternalTree bool     `json:"externalTree"`
		RemovePrior  bool     `json:"removePrior"`
		PSKs         []int    `json:"psks"`
	}
	GroupInfoParams struct {
		ExternalTree bool `json:"externalTree"`
	}
	InstallExternalPSKParams struct {
		Clients []string `json:"clients"`
	}
	AddProposalParams struct {
		KeyPackage int `json:"keyPackage"`
	}
	RemoveProposalParams struct {
		Removed string `json:"removed"`
	}
	ExternalPSKProposalParams struct {
		PSKID int `json:"pskID"`
	}
	ResumptionPSKProposalParams struct {
		EpochID int `json:"epochID"`
	}
	GroupContextExtensionsProposalParams struct {
		Extensions []Extension `json:"extensions"`
	}
	// ProposalDescription is a by-value proposal (fullCommit/commit "byValue")
	// or the proposal of an externalSignerProposal step.
	ProposalDescription struct {
		ProposalType      string      `json:"proposalType"`
		KeyPackage        int         `json:"keyPackage"`
		Removed           string      `json:"removed"`
		PSKID             int         `json:"pskID"`
		EpochID           int         `json:"epochID"`
		Extensions        []Extension `json:"extensions"`
		ChangeGroupID     bool        `json:"changeGroupID"`
		ChangeCipherSuite bool        `json:"changeCipherSuite"`
	}
	FullCommitParams struct {
		ByReference  []int                 `json:"byReference"`
		ByValue      []ProposalDescription `json:"byValue"`
		Members      []string              `json:"members"`
		Joiners      []string              `json:"joiners"`
		ForcePath    bool                  `json:"force_path"`
		ExternalTree bool                  `json:"external_tree"`
	}
	CommitParams struct {
		ByReference  []int                 `json:"byReference"`
		ByValue      []ProposalDescription `json:"byValue"`
		ForcePath    bool                  `json:"force_path"`
		ExternalTree bool                  `json:"external_tree"`
	}
	HandleCommitParams struct {
		Commit      int   `json:"commit"`
		ByReference []int `json:"byReference"`
	}
	ProtectParams struct {
		AuthenticatedData string `json:"authenticatedData"`
		Plaintext         string `json:"plaintext"`
	}
	UnprotectParams struct {
		Ciphertext int `json:"ciphertext"`
	}
	ReInitParams struct {
		Proposer               string      `json:"proposer"`
		Committer              string      `json:"committer"`
		Welcomer               string      `json:"welcomer"`
		Members                []string    `json:"members"`
		ChangeCipherSuite      bool        `json:"changeCipherSuite"`
		ChangeGroupID          bool        `json:"changeGroupID"`
		Extensions             []Extension `json:"extensions"`
		ForcePath              bool        `json:"forcePath"`
		ExternalTree           bool        `json:"externalTree"`
		ExternalReinitProposal int         `json:"externalReinitProposal"`
	}
	// BranchParams mirrors upstream, whose tags are "force_path" and
	// "external_tree"; configs that spell them "forcePath"/"externalTree" (as
	// interop/configs/branch.json does) therefore leave them false, exactly as
	// with the upstream runner.
	BranchParams struct {
		Members      []string    `json:"members"`
		ForcePath    bool        `json:"force_path"`
		ExternalTree bool        `json:"external_tree"`
		Extensions   []Extension `json:"extensions"`
	}
	NewMemberAddProposalParams struct {
		Joiner string `json:"joiner"`
	}
	AddExternalSignerParams struct {
		Signer string `json:"signer"`
	}
	ExternalSignerProposalParams struct {
		Member      string              `json:"member"`
		Description ProposalDescription `json:"description"`
	}
)

// Params decodes the step's action-specific parameters into the matching
// *XxxParams type (nil for actions without parameters).
func (s Step) Params() (any, error) {
	var p any
	switch s.Action {
	case ActionCreateGroup:
		p = new(CreateGroupParams)
	case ActionCreateKeyPackage, ActionUpdateProposal, ActionHandlePendingCommit:
		return nil, nil
	case ActionJoinGroup:
		p = new(JoinGroupParams)
	case ActionExternalJoin:
		p = new(ExternalJoinParams)
	case ActionInstallExternalPSK:
		p = new(InstallExternalPSKParams)
	case ActionGroupInfo:
		p = new(GroupInfoParams)
	case ActionAddProposal:
		p = new(AddProposalParams)
	case ActionRemoveProposal:
		p = new(RemoveProposalParams)
	case ActionExternalPSKProposal:
		p = new(ExternalPSKProposalParams)
	case ActionResumptionPSKProposal:
		p = new(ResumptionPSKProposalParams)
	case ActionGroupContextExtensionsProposal:
		p = new(GroupContextExtensionsProposalParams)
	case ActionFullCommit:
		p = new(FullCommitParams)
	case ActionCommit:
		p = new(CommitParams)
	case ActionHandleCommit:
		p = new(HandleCommitParams)
	case ActionProtect:
		p = new(ProtectParams)
	case ActionUnprotect:
		p = new(UnprotectParams)
	case ActionReInit:
		p = new(ReInitParams)
	case ActionBranch:
		p = new(BranchParams)
	case ActionNewMemberAddProposal:
		p = new(NewMemberAddProposalParams)
	case ActionAddExternalSigner:
		p = new(AddExternalSignerParams)
	case ActionExternalSignerProposal:
		p = new(ExternalSignerProposalParams)
	default:
		return nil, fmt.Errorf("unknown action: %s", s.Action)
	}
	if err := json.Unmarshal(s.Raw, p); err != nil {
		return nil, err
	}
	return p, nil
}

// Keys under which a step's outputs are remembered for later steps.
const (
	keyGroupID            = "group_id"
	keyKeyPackage         = "key_package"
	keyWelcome            = "welcome"
	keyCommit             = "commit"
	keyProposal           = "proposal"
	keyEpochAuthenticator = "epoch_authenticator"
	keyRatchetTree        = "ratchet_tree"
	keyGroupInfo          = "group_info"
	keyPSKID              = "psk_id"
	keyPSKSecret          = "psk_secret"
	keyCiphertext         = "ciphertext"
	keyAuthenticatedData  = "authenticatedData"
	keyPlaintext          = "plaintext"
)

// outputs lists the keys a successfully executed step of each action stores
// (ratchet_tree only when an external tree is requested).
var outputs = map[Action][]string{
	ActionCreateGroup:                    {keyGroupID},
	ActionCreateKeyPackage:               {keyKeyPackage, "init_priv", "encryption_priv", "signature_priv"},
	ActionExternalJoin:                   {keyGroupInfo, keyRatchetTree, keyCommit, keyEpochAuthenticator},
	ActionInstallExternalPSK:             {keyPSKID, keyPSKSecret},
	ActionGroupInfo:                      {keyGroupInfo, keyRatchetTree},
	ActionAddProposal:                    {keyProposal},
	ActionUpdateProposal:                 {keyProposal},
	ActionRemoveProposal:                 {keyProposal},
	ActionExternalPSKProposal:            {keyProposal},
	ActionResumptionPSKProposal:          {keyProposal},
	ActionGroupContextExtensionsProposal: {keyProposal},
	ActionFullCommit:                     {keyWelcome, keyCommit, keyRatchetTree, keyEpochAuthenticator},
	ActionCommit:                         {keyCommit, keyWelcome, keyRatchetTree},
	ActionProtect:                        {keyAuthenticatedData, keyPlaintext, keyCiphertext},
	ActionUnprotect:                      {keyAuthenticatedData, keyPlaintext},
	ActionNewMemberAddProposal:           {keyProposal, "init_priv", "encryption_priv", "signature_priv"},
	ActionAddExternalSigner:              {keyProposal},
	ActionExternalSignerProposal:         {keyProposal},
}

type ref struct {
	index int
	key   string
}

func proposalDescriptionRefs(d ProposalDescription) ([]ref, error) {
	switch d.ProposalType {
	case "add":
		return []ref{{d.KeyPackage, keyKeyPackage}}, nil
	case "externalPSK":
		return []ref{{d.PSKID, keyPSKID}}, nil
	case "reinit":
		return []ref{{0, keyGroupID}}, nil
	case "remove", "resumptionPSK", "groupContextExtensions":
		return nil, nil
	}
	return nil, fmt.Errorf("unknown proposal type [%s]", d.ProposalType)
}

// refs returns the earlier-step outputs a step reads, and the actor names it
// sends RPCs to besides its own "actor".
func refs(p any) (rs []ref, roles []string, err error) {
	add := func(key string, idx ...int) {
		for _, i := range idx {
			rs = append(rs, ref{i, key})
		}
	}
	descs := func(ds ...ProposalDescription) {
		for _, d := range ds {
			r, e := proposalDescriptionRefs(d)
			if e != nil && err == nil {
				err = e
			}
			rs = append(rs, r...)
		}
	}
	switch p := p.(type) {
	case *CreateGroupParams:
		roles = p.Members
	case *JoinGroupParams:
		add(keyWelcome, p.Welcome)
	case *ExternalJoinParams:
		add(keyPSKID, p.PSKs...)
		roles = append([]string{p.Joiner}, p.Members...)
	case *InstallExternalPSKParams:
		roles = p.Clients
	case *AddProposalParams:
		add(keyKeyPackage, p.KeyPackage)
	case *ExternalPSKProposalParams:
		add(keyPSKID, p.PSKID)
	case *FullCommitParams:
		add(keyProposal, p.ByReference...)
		descs(p.ByValue...)
		roles = append(slices.Clone(p.Members), p.Joiners...)
	case *CommitParams:
		add(keyProposal, p.ByReference...)
		descs(p.ByValue...)
	case *HandleCommitParams:
		add(keyCommit, p.Commit)
		add(keyProposal, p.ByReference...)
	case *UnprotectParams:
		add(keyCiphertext, p.Ciphertext)
	case *ReInitParams:
		add(keyGroupID, 0)
		if p.Proposer == "" {
			add(keyProposal, p.ExternalReinitProposal)
		} else {
			roles = append(roles, p.Proposer)
		}
		roles = append(roles, p.Committer, p.Welcomer)
		roles = append(roles, p.Members...)
	case *BranchParams:
		roles = p.Members
	case *NewMemberAddProposalParams:
		roles = []string{p.Joiner}
	case *AddExternalSignerParams:
		roles = []string{p.Signer}
	case *ExternalSignerProposalParams:
		descs(p.Description)
		roles = []string{p.Member}
	}
	return rs, roles, err
}

// actorless lists the actions that do not use the step's "actor".
var actorless = map[Action]bool{ActionInstallExternalPSK: true, ActionReInit: true}

// Validate statically checks a script: every action is known, its parameters
// decode, every step that needs an "actor" has one, every referenced step
// index points to an earlier step of an action that produces the referenced
// output, and every client role named in the parameters is one of Actors()
// (upstream would crash on an unassigned role).
func (s Script) Validate() error {
	actors := s.Actors()
	for i, step := range s {
		fail := func(format string, args ...any) error {
			return &StepError{Index: i, Action: step.Action, Actor: step.Actor, Err: fmt.Errorf(format, args...)}
		}
		if !step.Action.Known() {
			return fail("unknown action")
		}
		if step.Actor == "" && !actorless[step.Action] {
			return fail("missing actor")
		}
		p, err := step.Params()
		if err != nil {
			return fail("bad parameters: %v", err)
		}
		rs, roles, err := refs(p)
		if err != nil {
			return fail("%v", err)
		}
		for _, r := range rs {
			if r.index < 0 || r.index >= i {
				return fail("reference to step %d (%s) is not an earlier step", r.index, r.key)
			}
			if !slices.Contains(outputs[s[r.index].Action], r.key) {
				return fail("step %d (%s) produces no %s", r.index, s[r.index].Action, r.key)
			}
		}
		for _, role := range roles {
			if _, ok := slices.BinarySearch(actors, role); !ok {
				return fail("participant %q is never assigned a client", role)
			}
		}
	}
	return nil
}

// Validate validates every script of the config.
func (c *Config) Validate() error {
	for _, name := range c.Names() {
		if err := c.Scripts[name].Validate(); err != nil {
			return fmt.Errorf("script %q: %w", name, err)
		}
	}
	return nil
}
